// No production file over 400 lines: a file that long does more than one thing. The exceptions are
// named here, each with its owner's reason, and an exception that is no longer over the limit must
// leave the list (so it stays short and true).
import test from "ava";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";

const LIMIT = 400;
const ROOTS = ["api", "lib", "operator", "cri-shim"];

/**
 * Files over the limit that are known and being split by the engineers who own them: none now. A
 * file may join only with its owner's reason beside it, and leaves once it is split.
 */
const EXCEPTIONS = new Set<string>([]);

/** Non-test TypeScript sources: *.test.ts and test/ folders (harnesses, fixtures) are not production code. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "test" && e.name !== "node_modules") out.push(...sources(p));
    } else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".d.ts"))
      out.push(p);
  }
  return out;
}

const lineCount = (path: string) => readFileSync(path, "utf8").replace(/\n$/, "").split("\n").length;

test(`no production file in ${ROOTS.join(", ")} is over ${LIMIT} lines`, (t) => {
  const files = ROOTS.flatMap((r) => sources(join(REPO_ROOT, r)));
  t.true(files.length > 50, "the walk found the sources");
  const over = files
    .map((f) => ({ file: relative(REPO_ROOT, f), lines: lineCount(f) }))
    .filter((f) => f.lines > LIMIT);
  const offenders = over.filter((f) => !EXCEPTIONS.has(f.file)).map((f) => `${f.file} (${f.lines} lines)`);
  t.deepEqual(offenders, [], `over ${LIMIT} lines: ${offenders.join(", ")}`);
  const stale = [...EXCEPTIONS].filter((e) => !over.some((f) => f.file === e));
  t.deepEqual(stale, [], `no longer over ${LIMIT} lines, remove from EXCEPTIONS: ${stale.join(", ")}`);
});

test("the counter sees a file over the limit", (t) => {
  t.true(lineCount(join(REPO_ROOT, "package-lock.json")) > LIMIT);
});
