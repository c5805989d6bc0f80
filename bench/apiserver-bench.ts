// What bench:operator and bench:crd-cost share: the refusal to measure a busy machine, the user's
// UnikernelVM, creates at a fixed concurrency, the machine's facts, and how a benchmark's main ends.
import os from "node:os";
import { API_VERSION, type UnikernelVM } from "../api/index.js";

const LOAD_LIMIT = 1.5;

/** The 1-minute load average now; exits (3) at LOAD_LIMIT or above unless forced. */
export function loadAvgOrExit(force: boolean): number {
  const loadAvgAtStart = Number(os.loadavg()[0]!.toFixed(2));
  if (loadAvgAtStart >= LOAD_LIMIT && !force) {
    console.error(
      `load average ${loadAvgAtStart} >= ${LOAD_LIMIT}: the figures would measure the neighbours. Rerun when quiet, or --force (to a scratch --out).`,
    );
    process.exit(3);
  }
  return loadAvgAtStart;
}

/** The UnikernelVM the benchmarks' user creates: an image and its memory, the rest defaulted. */
export const userVm = (name: string): UnikernelVM => ({
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name },
  spec: { image: "registry.local:5000/superfluid/hello:1", memory: "8Mi" },
});

/** fn(0) .. fn(n-1), `concurrency` at a time. */
export async function inBatches(
  n: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** The machine a result was measured on, for its JSON. */
export const machineFacts = (forced: boolean) => ({
  cpus: os.cpus().length,
  node: process.version,
  loadAverage1mAtEnd: Number(os.loadavg()[0]!.toFixed(2)),
  forced,
});

/** Runs a benchmark's main: exit 0 when it is done, 1 with the error's stack when it fails. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err instanceof Error ? err.stack : String(err));
      process.exit(1);
    },
  );
}
