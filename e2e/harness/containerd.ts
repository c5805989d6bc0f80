// A real containerd (Debian's, with its CRI plugin and runc) for tests: its own root, state and
// socket in a temp dir, the native snapshotter (works on any file system), a loopback-only CNI
// config (pods get a network namespace with lo; nothing on the host's network changes), plain-HTTP
// mirrors for the test registries, and a sandbox image from such a registry (no internet images).
// stop() ends containerd and the runc shims it started (found by the socket path in their command
// line), unmounts what is left under the temp dir and removes it.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "./control-plane.js";

export const CONTAINERD_BINARY = process.env.SUPERFLUID_CONTAINERD_BIN ?? "/usr/bin/containerd";

export interface ContainerdOptions {
  /** Registry hosts (host:port) pulled from over plain HTTP. */
  plainHttpRegistries: string[];
  /** The pause image of every pod sandbox. */
  sandboxImage: string;
}

export interface TestContainerd {
  dir: string;
  socket: string;
  /** unix://<socket>, as --fallback-runtime-endpoint and the kubelet take it. */
  endpoint: string;
  pid(): number | undefined;
  /** Ends containerd (SIGTERM, then SIGKILL); its runc shims and containers keep running. */
  halt(): Promise<void>;
  /** Starts it again on the same root and state. */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

function config(dir: string, opts: ContainerdOptions): string {
  const mirrors = opts.plainHttpRegistries
    .map(
      (h) =>
        `  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."${h}"]\n    endpoint = ["http://${h}"]`,
    )
    .join("\n");
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${opts.sandboxImage}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # A test machine may lack CAP_SYS_RESOURCE (a container): no oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${dir}/cni"
${mirrors}
`;
}

async function waitFor(what: string, probe: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Pids of processes whose command line mentions `needle` (the shims of this containerd). */
function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(needle)) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export async function startContainerd(opts: ContainerdOptions): Promise<TestContainerd> {
  const dir = await mkdtemp(join(tmpdir(), "sf-containerd-"));
  await mkdir(join(dir, "cni"));
  await writeFile(
    join(dir, "cni", "10-loopback.conflist"),
    JSON.stringify({ cniVersion: "0.4.0", name: "loopback-only", plugins: [{ type: "loopback" }] }),
  );
  await writeFile(join(dir, "config.toml"), config(dir, opts));
  const socket = join(dir, "containerd.sock");
  let child: ChildProcess | undefined;

  const resume = async (): Promise<void> => {
    const logFile = join(dir, "containerd.log");
    const fd = openSync(logFile, "a");
    child = spawn(CONTAINERD_BINARY, ["--config", join(dir, "config.toml")], {
      stdio: ["ignore", fd, fd],
    });
    const c = child;
    await waitFor(
      `containerd socket ${socket} (log: ${logFile})`,
      () => c.exitCode === null && existsSync(socket),
      30_000,
    );
  };
  const halt = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGTERM");
    const timer = setTimeout(() => c.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };
  await resume().catch(async (err: unknown) => {
    await halt();
    throw err;
  });
  return {
    dir,
    socket,
    endpoint: `unix://${socket}`,
    pid: () => child?.pid,
    halt,
    resume,
    async stop() {
      await halt();
      for (const pid of pidsMentioning(socket)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      // Sandbox /dev/shm and rootfs mounts of containers that were not removed.
      const mounts = readFileSync("/proc/mounts", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[1] ?? "")
        .filter((m) => m.startsWith(dir))
        .sort((a, b) => b.length - a.length);
      for (const m of mounts) await runCommand("umount", ["-l", m]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
