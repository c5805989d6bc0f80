// Leaves nothing behind when a test process ends without calling stop(): a failed test, an uncaught
// exception, Ctrl-C. QEMU also runs under `setpriv --pdeathsig KILL`, so even a SIGKILLed test
// process takes its nodes with it; what this adds is the removal of their temp dirs.
import { rmSync } from "node:fs";

export interface Leftovers {
  pid: number | undefined;
  dirs: string[];
}

const live = new Set<Leftovers>();
let installed = false;

function killAndRemove(entry: Leftovers): void {
  if (entry.pid !== undefined) {
    try {
      process.kill(entry.pid, "SIGKILL");
    } catch {
      // already exited
    }
  }
  for (const dir of entry.dirs) rmSync(dir, { recursive: true, force: true });
}

function cleanupAll(): void {
  for (const entry of live) killAndRemove(entry);
  live.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", cleanupAll);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      cleanupAll();
      // If nobody else handles this signal, die of it as the process would have without us.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

export function track(entry: Leftovers): void {
  install();
  live.add(entry);
}

export function untrack(entry: Leftovers): void {
  live.delete(entry);
}
