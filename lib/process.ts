// Child processes that cannot outlive the test (or demo) that started them.
// Every ManagedProcess is registered with an orphan guard: a tiny shell loop that watches this
// Node process and, should it die without cleaning up (SIGKILL, a crash), kills the registered
// process groups and removes the registered directories. Normal stop() also cleans up.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { appendFileSync, createWriteStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let guardDir: string | undefined;
const liveGroups = new Set<number>();
const liveDirs = new Set<string>();

function guard(): string {
  if (guardDir) return guardDir;
  guardDir = mkdtempSync(join(tmpdir(), "sf-guard-"));
  writeFileSync(join(guardDir, "pgids"), "");
  writeFileSync(join(guardDir, "dirs"), "");
  const script = `
    while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
    for g in $(cat "$0/pgids"); do kill -TERM -- "-$g" 2>/dev/null; done
    sleep 2
    for g in $(cat "$0/pgids"); do kill -KILL -- "-$g" 2>/dev/null; done
    while read -r d; do [ -n "$d" ] && rm -rf "$d"; done < "$0/dirs"
    rm -rf "$0"`;
  const child = spawn("bash", ["-c", script, guardDir], { detached: true, stdio: "ignore" });
  child.unref();
  process.once("exit", () => {
    // Synchronous last resort for a normal exit that skipped stop(): kill what is still registered.
    for (const g of liveGroups) {
      try {
        process.kill(-g, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
  return guardDir;
}

/** A temporary directory removed when the process exits, whichever way it exits. */
export function managedTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  appendFileSync(join(guard(), "dirs"), dir + "\n");
  return dir;
}

export function releaseTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logPath: string;
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<number | NodeJS.Signals>;
  stop(graceMs?: number): Promise<void>;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  opts: { logPath: string; env?: NodeJS.ProcessEnv; cwd?: string },
): ManagedProcess {
  const out = createWriteStream(opts.logPath, { flags: "a" });
  const child = spawn(command, args, {
    detached: true, // own process group, so stop() reaches its children too
    stdio: ["ignore", "pipe", "pipe"],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  if (child.pid === undefined) throw new Error(`${name}: failed to start ${command}`);
  const pid = child.pid;
  liveGroups.add(pid);
  appendFileSync(join(guard(), "pgids"), `${pid}\n`);
  child.stdout?.pipe(out, { end: false });
  child.stderr?.pipe(out, { end: false });
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    child.once("exit", (code, signal) => {
      liveGroups.delete(pid);
      resolve(code ?? signal ?? "SIGKILL");
    });
    child.once("error", () => resolve(127));
  });
  void exited.then(() => out.end());
  return {
    name,
    pid,
    child,
    logPath: opts.logPath,
    exited,
    async stop(graceMs = 5000) {
      if (!liveGroups.has(pid)) return;
      try {
        process.kill(-pid, "SIGTERM");
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs a command to completion. */
export function run(
  command: string,
  args: string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
) {
  const r = spawnSync(command, args, {
    input: opts.input,
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

export function runOrThrow(
  command: string,
  args: string[],
  opts: { input?: string; cwd?: string } = {},
): string {
  const r = run(command, args, opts);
  if (r.code !== 0)
    throw new Error(`${command} ${args.join(" ")} exited ${r.code}: ${r.stderr.trim().slice(-2000)}`);
  return r.stdout;
}

/** Runs a command to completion without blocking the event loop. */
export function runAsync(
  command: string,
  args: string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
    child.once("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}
