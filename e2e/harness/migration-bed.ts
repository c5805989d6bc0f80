// What migrate.xen.test.ts and bench/migrate.ts share: two dom0s (emulated Xen nodes on one segment)
// driven over exec with cli.ts, long-running parts (receiver, console watchers) started in the
// background with their JSON lines in the node's shared host dir, read from the host.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { REPO_ROOT } from "../../lib/paths.js";

export const HELLO_KERNEL = join(REPO_ROOT, "native/build/hello/hello");
// Bundled (scripts/build-bundle.mjs): dom0 reads the repo over 9p, where loading module by module is slow.
// SUPERFLUID_HYPERVISOR in this process's environment (read at each call: a bench switches it)
// picks the backend in dom0, as for the shim.
// extraEnv: test-only switches, e.g. the lean save's SUPERFLUID_SAVE_ZERO_PAGES=1 for a long stream.
const cliCmd = (extraEnv = "") => {
  const hv = process.env.SUPERFLUID_HYPERVISOR ?? "";
  const vars = `${/^(lean|libxl)$/.test(hv) ? `SUPERFLUID_HYPERVISOR=${hv} ` : ""}${extraEnv}`.trim();
  return `${vars ? `env ${vars} ` : ""}${process.execPath} ${join(REPO_ROOT, "dist/bundle/migration-cli.mjs")}`;
};

/** The part of an emulated Xen node (e2e/xen-node) this needs. */
export interface Dom0 {
  readonly name: string;
  readonly hostDir: string;
  readonly dom0HostDir: string;
  readonly segmentIp: string;
  exec(cmd: string, opts?: { timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
}

export interface Tick {
  at: number;
  n: number;
}
export interface CliError {
  reason: string;
  message: string;
  sourceResumed: boolean;
}
export interface SendOutcome {
  live?: boolean;
  ok: boolean;
  bytes?: number;
  totalMs?: number;
  downtimeMs?: number;
  /** ms from the source domain suspended: saved, stream ended, restored, committed, running */
  timeline?: Record<string, number>;
  /** the lean backend's save phases */
  phases?: Record<string, number>;
  error?: CliError;
  at: number;
}

export async function sh(node: Dom0, cmd: string, timeoutMs = 180_000): Promise<string> {
  const r = await node.exec(cmd, { timeoutMs });
  if (r.code !== 0)
    throw new Error(`${node.name}: ${cmd}\nexit ${r.code}\n${r.stderr.slice(-3000)}${r.stdout.slice(-2000)}`);
  return r.stdout.trim();
}

/** Runs cli.ts and parses the last JSON line it printed (also on exit code 1 = a reported failure). */
async function cli<T>(
  node: Dom0,
  args: string,
  timeoutMs = 900_000,
  extraEnv = "",
): Promise<{ code: number; value: T; stderr: string }> {
  const r = await node.exec(`${cliCmd(extraEnv)} ${args}`, { timeoutMs });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (r.code > 1 || (!last.startsWith("{") && !last.startsWith("[")))
    throw new Error(
      `${node.name}: cli ${args}\nexit ${r.code}\n${r.stderr.slice(-3000)}${r.stdout.slice(-1000)}`,
    );
  return { code: r.code, value: JSON.parse(last) as T, stderr: r.stderr };
}

export function readLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as T);
}

export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 120_000,
  pollMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** Starts `cmd` detached in dom0; its stdout lines land in <hostDir>/<tag>.out, its pid in <tag>.pid. */
export async function background(
  node: Dom0,
  tag: string,
  cmd: string,
): Promise<{ out: string; err: string }> {
  const d = node.dom0HostDir;
  await sh(
    node,
    `rm -f ${d}/${tag}.out ${d}/${tag}.pid; setsid -f sh -c 'echo $$ > ${d}/${tag}.pid; exec ${cmd} > ${d}/${tag}.out 2> ${d}/${tag}.err' < /dev/null > /dev/null 2>&1`,
  );
  return { out: join(node.hostDir, `${tag}.out`), err: join(node.hostDir, `${tag}.err`) };
}

export async function signalBackground(node: Dom0, tag: string, signal: "TERM" | "KILL"): Promise<void> {
  await sh(node, `kill -${signal} $(cat ${node.dom0HostDir}/${tag}.pid) 2>/dev/null || true`);
}

/** The segment NIC (eth1) moves into a bridge that keeps its address, so guests whose vifs join that
 *  bridge are on the segment, with the same address on every node. */
export async function bridgeSegment(node: Dom0, bridge: string): Promise<void> {
  await sh(
    node,
    `ip link add ${bridge} type bridge && ip link set ${bridge} up && ip addr del ${node.segmentIp}/24 dev eth1 && ` +
      `ip link set eth1 master ${bridge} && ip addr add ${node.segmentIp}/24 dev ${bridge}`,
  );
}

export async function makeIdentity(node: Dom0, tag: string): Promise<{ file: string; fingerprint: string }> {
  const file = `${node.dom0HostDir}/${tag}.identity.json`;
  return {
    file,
    fingerprint: (await cli<{ fingerprint: string }>(node, `identity --out ${file}`)).value.fingerprint,
  };
}

/** A hello domain built and unpaused by the libxl driver; its spec is kept for `send`. */
export async function createHello(
  node: Dom0,
  name: string,
  memoryMiB: number,
): Promise<{ domid: number; specFile: string }> {
  return createDomain(node, { name, kernel: HELLO_KERNEL, memoryMiB, cmdline: "interval=1" });
}

/** Builds and unpauses a domain with the shim's backend in dom0 (the migration CLI's create). */
export async function createDomain(
  node: Dom0,
  o: {
    name: string;
    kernel: string;
    memoryMiB: number;
    cmdline: string;
    initrd?: string;
    guestType?: "pv" | "pvh";
    vif?: { bridge: string; mac: string };
  },
): Promise<{ domid: number; specFile: string }> {
  const specFile = `${node.dom0HostDir}/${o.name}.spec.json`;
  const extra = [
    o.initrd ? `--initrd ${o.initrd}` : "",
    o.guestType ? `--guest-type ${o.guestType}` : "",
    o.vif ? `--bridge ${o.vif.bridge} --mac ${o.vif.mac}` : "",
  ].join(" ");
  const { code, value, stderr } = await cli<{ domid: number }>(
    node,
    `create --kernel ${o.kernel} --name ${o.name} --memory-mib ${o.memoryMiB} --cmdline '${o.cmdline}' ${extra} --spec-out ${specFile}`,
  );
  if (code !== 0 || !Number.isInteger(value.domid))
    throw new Error(
      `${node.name}: create ${o.name} failed: ${JSON.stringify(value)}\n${stderr.slice(-2000)}`,
    );
  return { domid: value.domid, specFile };
}

/** Console lines of domain `name` with this dom0's timestamps, from now on (also across a restore). */
export async function watchConsole(
  node: Dom0,
  name: string,
): Promise<{
  ticks(): Tick[];
  lines(): string[];
  linesWithTime(): { at: number; line: string }[];
  stop(): Promise<void>;
}> {
  const tag = `console-${name}`;
  const { out } = await background(node, tag, `${cliCmd()} watch-console --name ${name}`);
  const lines = () => readLines<{ at: number; line: string }>(out);
  return {
    lines: () => lines().map((l) => l.line),
    linesWithTime: lines,
    ticks: () =>
      lines().flatMap((l) => {
        const m = /hello: tick (\d+)/.exec(l.line);
        return m ? [{ at: l.at, n: Number(m[1]) }] : [];
      }),
    stop: () => signalBackground(node, tag, "TERM"),
  };
}

export interface Receiver {
  /** The receiver's stderr (its log lines), in the host's view of the node's dir. */
  logFile: string;
  port: number;
  fingerprint: string;
  endpoint: string;
  events(): {
    event: string;
    /** guest-link-up: ms from the result to the guest's vifs' carrier up (null: not within 15 s) */
    msAfterResult?: number | null;
    bytes?: number;
    error?: CliError;
    domid?: number;
    restoreMs?: number;
    timeline?: Record<string, number>;
  }[];
  outcome(timeoutMs?: number): Promise<{
    event: string;
    error?: CliError;
    domid?: number;
    bytes?: number;
    restoreMs?: number;
    timeline?: Record<string, number>;
    /** the lean backend's restore phases */
    phases?: Record<string, number>;
  }>;
}

export async function startReceiver(
  node: Dom0,
  tag: string,
  sourceFingerprint: string,
  extra = "",
  /** Variables for the receiver's environment, e.g. LIBXL_LOG_LEVEL=debug. */
  extraEnv = "",
): Promise<Receiver> {
  const { out, err } = await background(
    node,
    tag,
    `${cliCmd(extraEnv)} receive --host ${node.segmentIp} --source-fingerprint ${sourceFingerprint} ${extra}`,
  );
  type Line = { event: string; port?: number; fingerprint?: string };
  const listening = await waitFor(
    `${tag} to listen`,
    () => {
      const l = readLines<Line>(out).find((e) => e.event === "listening" || e.event === "error");
      if (l?.event === "error")
        throw new Error(`receiver failed: ${JSON.stringify(l)} ${readFileSync(err, "utf8").slice(-2000)}`);
      return l;
    },
    900_000, // node itself can take minutes to start in a dom0 on a loaded machine
    500,
  );
  const events = () => readLines<ReturnType<Receiver["events"]>[number]>(out);
  return {
    logFile: err,
    port: listening.port!,
    fingerprint: listening.fingerprint!,
    endpoint: `${node.segmentIp}:${listening.port!}`,
    events,
    outcome: (timeoutMs = 300_000) =>
      waitFor(
        `${tag}'s outcome`,
        () => events().find((e) => e.event === "result" || e.event === "error"),
        timeoutMs,
      ),
  };
}

export async function sendFrom(
  node: Dom0,
  o: {
    identityFile: string;
    specFile: string;
    domid: number;
    endpoint: string;
    targetFingerprint: string;
    live?: boolean;
    /** false: no stop-and-copy restart when live pre-copy is impossible (cli --no-fallback). */
    fallback?: boolean;
    timeoutMs?: number;
    /** Send all-zero pages with their data (a stream as long as the guest's memory, to cut mid-way). */
    allPages?: boolean;
    /** More variables for the sender's environment, e.g. LIBXL_LOG_LEVEL=debug. */
    env?: string;
  },
): Promise<SendOutcome & { stderr: string }> {
  const args = `send --identity ${o.identityFile} --spec ${o.specFile} --domid ${o.domid} --endpoint ${o.endpoint} --target-fingerprint ${o.targetFingerprint}${o.live === false ? " --cold" : ""}${o.fallback === false ? " --no-fallback" : ""}${o.timeoutMs ? ` --timeout-ms ${o.timeoutMs}` : ""}`;
  const env = `${o.allPages ? "SUPERFLUID_SAVE_ZERO_PAGES=1 " : ""}${o.env ?? ""}`.trim();
  const { code, value, stderr } = await cli<Omit<SendOutcome, "ok">>(node, args, 900_000, env);
  return { ok: code === 0, ...value, stderr };
}

export async function domains(
  node: Dom0,
): Promise<{ domid: number; name: string; state: string; shutdownReason?: string }[]> {
  return (await cli<{ domid: number; name: string; state: string }[]>(node, "list")).value.filter(
    (d) => d.domid !== 0,
  );
}

/** `b`'s clock minus `a`'s, measured over the segment from a's dom0. */
export async function clockOffset(a: Dom0, b: Dom0): Promise<{ offsetMs: number; uncertaintyMs: number }> {
  const { out } = await background(b, "clock-serve", `${cliCmd()} clock-serve --host ${b.segmentIp}`);
  try {
    const { port } = await waitFor("clock server", () => readLines<{ port: number }>(out)[0], 900_000, 500);
    return (
      await cli<{ offsetMs: number; uncertaintyMs: number }>(a, `clock-probe --peer ${b.segmentIp}:${port}`)
    ).value;
  } finally {
    await signalBackground(b, "clock-serve", "TERM");
  }
}
