// The CRI shim as the kubelet meets it: `node dist/bundle/cri-shim.mjs` started in dom0 of an emulated
// Xen node, serving SHIM_SOCKET. Its log goes to the host share so a failing test can print it.
// Bundled (scripts/build-bundle.mjs) because dom0 reads the repo over 9p under TCG: Node loading the
// shim's thousands of module files one by one took minutes; one file is one read.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { logger } from "../../lib/log.js";
import { REPO_ROOT } from "../../lib/paths.js";
import type { XenNode } from "../xen-node/index.js";
import { SHIM_SOCKET } from "./kubelet.js";

const log = logger("e2e-shim");
export const SHIM_MAIN = join(REPO_ROOT, "dist", "bundle", "cri-shim.mjs");
const CRI_VERSION_MAIN = join(REPO_ROOT, "dist", "bundle", "cri-version.mjs");
/** The same programs as tsc emits them, module by module: what bench/shim-start.ts compares against. */
export const UNBUNDLED = {
  shim: join(REPO_ROOT, "dist", "cri-shim", "src", "main.js"),
  criVersion: join(REPO_ROOT, "dist", "e2e", "cluster", "cri-version.js"),
};

export interface ShimOptions {
  /** Extra command-line arguments for the shim. */
  args?: string[];
  /** Extra environment (NAME=value), e.g. the registries it may reach over plain HTTP. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** false: run tsc's module-by-module output instead of the bundle (only to measure the difference). */
  bundled?: boolean;
}

export interface Shim {
  /** Milliseconds from launch to the shim answering CRI RuntimeService.Version. */
  readonly startMs: number;
  /** Of startMs, launch to the socket bound (dom0's clock, to the 2 s poll); the rest is the Version call. */
  readonly socketMs: number;
  log(lines?: number): string;
  /** The whole log, on the host share. */
  readonly logPath: string;
  stop(): Promise<void>;
}

/** In dash, after `read up _ </proc/uptime` ("1234.56"): the same as an integer number of centiseconds. */
const CENTISECONDS_UP = "${up%.*}${up#*.}";
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function startShim(node: XenNode, opts: ShimOptions = {}): Promise<Shim> {
  const [shimMain, criVersionMain] =
    opts.bundled === false ? [UNBUNDLED.shim, UNBUNDLED.criVersion] : [SHIM_MAIN, CRI_VERSION_MAIN];
  for (const built of [shimMain, criVersionMain])
    if (!existsSync(built))
      throw new Error(`the CRI shim is not built (${built} missing): run \`npm run build\``);
  const dom0Dir = `${node.dom0HostDir}/shim`;
  const logPath = join(node.hostDir, "shim", "shim.log");
  const shimLog = (lines = 60) => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no shim log)";
    }
  };
  // SUPERFLUID_HYPERVISOR and the pool settings in the test's environment reach the shim, so any
  // suite can run against either backend (lean by default; SUPERFLUID_HYPERVISOR=libxl node
  // scripts/test.mjs ... for libxl).
  const passed = Object.fromEntries(
    ["SUPERFLUID_HYPERVISOR", "SUPERFLUID_POOL_DEPTH", "SUPERFLUID_POOL_MAX_MIB", "SUPERFLUID_POOL_SHAPES"]
      .filter((k) => process.env[k])
      .map((k) => [k, process.env[k]!]),
  );
  const env = Object.entries({ ...passed, ...opts.env })
    .map(([k, v]) => `${k}=${shellQuote(v)}`)
    .join(" ");
  const args = (opts.args ?? []).map(shellQuote).join(" ");
  const launched = await node.exec(
    [
      "set -e",
      `mkdir -p ${dom0Dir} /run/superfluid /var/lib/superfluid`,
      // Its own filesystem, as on a real node: the kubelet's cAdvisor cannot size dom0's overlay root
      // (the image filesystem stats and the eviction manager would fail on every sync).
      "mountpoint -q /var/lib/superfluid || mount -t tmpfs -o size=512m tmpfs /var/lib/superfluid",
      // dom0's uptime in centiseconds, read without spawning a process (each costs seconds under TCG).
      `read up _ </proc/uptime; echo "${CENTISECONDS_UP}" >${dom0Dir}/shim.launched`,
      `${env} setsid ${process.execPath} ${shimMain} ${args} </dev/null >${dom0Dir}/shim.log 2>&1 & echo $! >${dom0Dir}/shim.pid`,
    ].join("\n"),
  );
  if (launched.code !== 0) throw new Error(`starting the shim in ${node.name} failed: ${launched.stderr}`);
  const started = Date.now();
  const deadline = started + (opts.readyTimeoutMs ?? 600_000);
  const stop = async () => {
    const pid = `$(cat ${dom0Dir}/shim.pid)`;
    await node
      .exec(
        `kill ${pid} 2>/dev/null; for i in $(seq 50); do kill -0 ${pid} 2>/dev/null || exit 0; sleep 0.2; done; kill -9 ${pid}`,
      )
      .catch(() => undefined);
  };
  // One waiting loop inside dom0 rather than a round trip per check: under TCG every process the
  // exec agent spawns costs seconds of emulated CPU. First the socket (the shim binds it once its
  // runtime has recovered state), then one CRI RuntimeService.Version call that must be answered.
  const waitSeconds = Math.ceil((deadline - Date.now()) / 1000);
  const r = await node.exec(
    [
      `pid=$(cat ${dom0Dir}/shim.pid); i=0`,
      `while [ ! -S ${SHIM_SOCKET} ]; do kill -0 $pid 2>/dev/null || exit 9; [ $i -ge ${Math.ceil(waitSeconds / 2)} ] && exit 1; sleep 2; i=$((i+1)); done`,
      `read up _ </proc/uptime; read launched <${dom0Dir}/shim.launched; echo "socket-ms $(((${CENTISECONDS_UP} - launched) * 10))"`,
      `${process.execPath} ${criVersionMain} ${SHIM_SOCKET} $((${waitSeconds} - 2 * i + 1)) $pid && exit 0`,
      `kill -0 $pid 2>/dev/null || exit 9; exit 1`,
    ].join("\n"),
    { timeoutMs: waitSeconds * 2000 + 60_000 },
  );
  if (r.code !== 0) {
    await stop();
    const why = r.code === 9 ? "exited" : `did not answer CRI RuntimeService.Version on ${SHIM_SOCKET}`;
    throw new Error(
      `the CRI shim in ${node.name} ${why}:\n${r.stderr.trim()}\n--- shim log ---\n${shimLog()}`,
    );
  }
  const startMs = Date.now() - started;
  const socketMs = Number(/^socket-ms (\d+)$/m.exec(r.stdout)?.[1] ?? NaN);
  const version = r.stdout.replace(/^socket-ms .*\n/m, "").trim();
  log.info("CRI shim serving", { node: node.name, version, startMs, socketMs });
  return { startMs, socketMs, log: shimLog, logPath, stop };
}
