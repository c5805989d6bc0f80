// A real containerd (Debian's, with its CRI plugin and runc) for tests: its own root, state and
// socket in a temp dir, the native snapshotter (works on any file system), a loopback-only CNI
// config (pods get a network namespace with lo; nothing on the host's network changes), plain-HTTP
// mirrors for the test registries, and a sandbox image from such a registry (no internet images).
// stop() ends containerd and the runc shims it started (found by the socket path in their command
// line), unmounts what is left under the temp dir and removes it.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "./control-plane.js";

export const CONTAINERD_BINARY = process.env.SUPERFLUID_CONTAINERD_BIN ?? "/usr/bin/containerd";
const CNI_PLUGIN_DIR = "/usr/lib/cni";

export interface ContainerdOptions {
  /** Registry hosts (host:port) pulled from over plain HTTP. */
  plainHttpRegistries: string[];
  /** The pause image of every pod sandbox. */
  sandboxImage: string;
  /**
   * "loopback" (default): pods get only lo, enough for host-network pods. "dummy": each pod also
   * gets an eth0 with an address: one end of a veth pair whose both ends stay inside the pod's own
   * network namespace, made by a test CNI plugin (nothing is created on the host), so pod-network sandboxes run too (critest).
   */
  podNetwork?: "loopback" | "dummy";
  /** Registry host → endpoint (http://host:port) containerd pulls that registry's images from. */
  mirrors?: Record<string, string>;
}

/** The test CNI plugin of podNetwork "dummy": eth0 and its veth peer, both inside the pod's namespace. */
const DUMMY_CNI_PLUGIN = `#!/bin/sh
case "$CNI_COMMAND" in
ADD)
  n=$(printf '%s' "$CNI_CONTAINERID" | cksum | cut -d' ' -f1)
  ip="10.99.$(( (n / 250) % 250 )).$(( n % 250 + 2 ))"
  nsenter --net="$CNI_NETNS" sh -c "ip link add $CNI_IFNAME type veth peer name $CNI_IFNAME-peer && ip addr add $ip/16 dev $CNI_IFNAME && ip link set $CNI_IFNAME-peer up && ip link set $CNI_IFNAME up" >&2 || exit 1
  printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"version":"4","interface":0,"address":"%s/16"}]}' "$CNI_IFNAME" "$CNI_NETNS" "$ip"
  ;;
VERSION) printf '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
*) : ;;
esac
`;

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
  const endpoints: [string, string][] = [
    ...opts.plainHttpRegistries.map((h): [string, string] => [h, `http://${h}`]),
    ...Object.entries(opts.mirrors ?? {}),
  ];
  const mirrors = endpoints
    .map(
      ([h, e]) => `  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."${h}"]\n    endpoint = ["${e}"]`,
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
    bin_dir = "${dir}/cni-bin"
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
  // containerd takes one CNI bin dir: Debian's plugins, and the test's own beside them.
  await mkdir(join(dir, "cni-bin"));
  for (const plugin of readdirSync(CNI_PLUGIN_DIR))
    await symlink(join(CNI_PLUGIN_DIR, plugin), join(dir, "cni-bin", plugin));
  await writeFile(join(dir, "cni-bin", "sf-dummy"), DUMMY_CNI_PLUGIN, { mode: 0o755 });
  const plugins = [{ type: "loopback" }, ...(opts.podNetwork === "dummy" ? [{ type: "sf-dummy" }] : [])];
  await writeFile(
    join(dir, "cni", "10-test.conflist"),
    JSON.stringify({ cniVersion: "0.4.0", name: `test-${opts.podNetwork ?? "loopback"}`, plugins }),
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
