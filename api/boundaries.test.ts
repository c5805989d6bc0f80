// The operator and the node share only api/ and lib/: neither imports the other, so each can be
// built, shipped and versioned on its own side of the contract.
import test from "ava";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { REPO_ROOT } from "../lib/paths.js";

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (e.endsWith(".ts")) out.push(p);
  }
  return out;
}

function importsInto(side: string, forbidden: string): string[] {
  const offenders: string[] = [];
  for (const file of sources(join(REPO_ROOT, side))) {
    for (const m of readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)[^"']*["']([^"']+)["']/gm)) {
      const spec = m[1]!;
      if (!spec.startsWith(".")) continue;
      const target = relative(REPO_ROOT, join(file, "..", spec));
      if (target.startsWith(forbidden + "/")) offenders.push(`${relative(REPO_ROOT, file)} -> ${spec}`);
    }
  }
  return offenders;
}

test("the operator does not import the CRI shim", (t) => {
  t.deepEqual(importsInto("operator", "cri-shim"), []);
});

test("the CRI shim does not import the operator", (t) => {
  t.deepEqual(importsInto("cri-shim", "operator"), []);
});

test("api/ imports nothing but itself and lib/", (t) => {
  t.deepEqual(
    [...importsInto("api", "operator"), ...importsInto("api", "cri-shim"), ...importsInto("api", "e2e")],
    [],
  );
});
