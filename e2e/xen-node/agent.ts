// The exec agent that runs inside an emulated Xen node's dom0 (started by dom0-init.sh). The host
// reaches it through a QEMU user-net hostfwd (127.0.0.1:<port> on the host -> 10.0.2.15:<port> in
// dom0). One TCP connection per command: the client writes one JSON line (AgentRequest), the agent
// answers one JSON line (AgentResponse) and closes. A connection per command lets commands run
// concurrently and a hung command never blocks the channel for the others.
//
// Deliberately dependency-free (no winston, no node_modules): it starts from the 9p root under CPU
// emulation, where every module loaded costs boot time. Its stderr goes to
// /var/log/superfluid-agent.log in dom0.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";

export interface AgentRequest {
  cmd: string;
  /** Kill the command's process group after this long; the response then has timedOut: true. */
  timeoutMs: number;
  /** Written to the command's stdin (closed afterwards). */
  stdin?: string;
  /**
   * Answer the boot probe without running a command: a fork of the agent (node) is costly under
   * emulation and the host probes every second while dom0 is still booting.
   */
  status?: boolean;
}

export interface AgentResponse {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function isAgentRequest(value: unknown): value is AgentRequest {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.cmd === "string" &&
    typeof v.timeoutMs === "number" &&
    (v.stdin === undefined || typeof v.stdin === "string") &&
    (v.status === undefined || typeof v.status === "boolean")
  );
}

/** 0: toolstack ready, 3: dom0 setup failed (stdout says why), 1: still booting. */
function bootStatus(): AgentResponse {
  const failed = "/run/superfluid/failed";
  if (existsSync(failed))
    return { code: 3, stdout: readFileSync(failed, "utf8"), stderr: "", timedOut: false };
  return {
    code: existsSync("/run/superfluid/toolstack-ready") ? 0 : 1,
    stdout: "",
    stderr: "",
    timedOut: false,
  };
}

function runCommand(request: AgentRequest): Promise<AgentResponse> {
  return new Promise((resolve) => {
    // detached: the command gets its own process group, so a timeout kills the whole pipeline.
    const child = spawn("/bin/sh", ["-c", request.cmd], { detached: true, stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, request.timeoutMs);
    child.stdout.on("data", (d: Buffer) => stdout.push(d));
    child.stderr.on("data", (d: Buffer) => stderr.push(d));
    child.stdin.on("error", () => undefined); // the command may exit without reading its stdin
    child.stdin.end(request.stdin ?? "");
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout: "", stderr: String(err), timedOut: false });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? 128 + (signal ? signalNumber(signal) : 0),
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        timedOut,
      });
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGPIPE: 13,
    SIGTERM: 15,
  };
  return numbers[signal] ?? 0;
}

function handle(socket: Socket): void {
  let buffered = "";
  socket.setEncoding("utf8");
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    const newline = buffered.indexOf("\n");
    if (newline < 0) return;
    socket.removeAllListeners("data");
    let parsed: unknown;
    try {
      parsed = JSON.parse(buffered.slice(0, newline));
    } catch {
      parsed = undefined;
    }
    if (!isAgentRequest(parsed)) {
      socket.end(
        JSON.stringify({
          code: 2,
          stdout: "",
          stderr: "superfluid agent: malformed request",
          timedOut: false,
        }) + "\n",
      );
      return;
    }
    if (parsed.status) {
      socket.end(JSON.stringify(bootStatus()) + "\n");
      return;
    }
    void runCommand(parsed).then((response) => socket.end(JSON.stringify(response) + "\n"));
  });
}

function main(): void {
  const portArg = process.argv.indexOf("--port");
  const port = Number(portArg >= 0 ? process.argv[portArg + 1] : "7000");
  const server = createServer(handle);
  server.listen(port, "0.0.0.0", () => process.stderr.write(`superfluid agent listening on ${port}\n`));
}

// Only run when executed (index.ts imports the types above).
if (process.argv[1]?.endsWith("/agent.js")) main();
