// The shim sizes libuv's pool from its entry point (main.ts), before anything has used it. That the
// size set there takes effect: blocking calls through koffi (as the Xen calls are) run THREADPOOL_SIZE
// at once in a process that sets the variable as main.ts does, and only libuv's default 4 otherwise.
import test from "ava";
import { spawnSync } from "node:child_process";
import { THREADPOOL_SIZE } from "./threadpool.js";

const probe = (setInProcess: boolean) => `
${setInProcess ? `process.env.UV_THREADPOOL_SIZE ??= "${THREADPOOL_SIZE}";` : ""}
const koffi = (await import("koffi")).default;
const usleep = koffi.load("libc.so.6").func("int usleep(unsigned int)");
const n = ${THREADPOOL_SIZE};
const t0 = performance.now();
await Promise.all(Array.from({ length: n }, () => new Promise((res, rej) =>
  usleep.async(300000, (err) => (err ? rej(err) : res())))));
console.log(JSON.stringify({ ms: performance.now() - t0 }));
`;

function run(setInProcess: boolean): number {
  const env = { ...process.env };
  delete env.UV_THREADPOOL_SIZE;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", probe(setInProcess)], {
    env,
    cwd: process.cwd(),
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { ms: number }).ms;
}

test("the pool size set in-process before first use runs that many blocking Xen-style calls at once", (t) => {
  // 16 sleeps of 300 ms: ~300 ms with 16 threads, ~1200 ms with libuv's 4.
  const sized = run(true);
  const defaulted = run(false);
  t.true(sized < 900, `with ${THREADPOOL_SIZE} threads: ${Math.round(sized)} ms`);
  t.true(defaulted >= 1100, `with libuv's default: ${Math.round(defaulted)} ms`);
});
