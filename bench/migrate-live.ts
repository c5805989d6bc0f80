// The live half of `npm run bench:migrate` (BENCH_PARTS=live): the http guest (Debian's kernel with
// our http app, booted as PVH, 128 MiB) answers a steady client while it moves from node A to node B
// live (pre-copy: HAP's log-dirty tracks the pages it writes while they are sent), then back from B
// to A by stop-and-copy, through the same migration code the node agent runs (the dom0 CLI).
// The guest's vif sits on a bridge that holds each dom0's segment NIC, so its address is the same on
// both nodes and the client (a curl loop in A's dom0) reaches it wherever it runs.
// Downtime: the source's own measure (the guest suspended -> the target says running, on the
// source's clock), the same for both moves. The client's view beside it: requests sent and failed
// during each move, and the longest gap between two answered requests.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startXenNode } from "../e2e/xen-node/index.js";
import {
  type Dom0,
  background,
  bridgeSegment,
  clockOffset,
  createDomain,
  makeIdentity,
  readLines,
  sendFrom,
  sh,
  signalBackground,
  startReceiver,
  waitFor,
} from "../e2e/harness/migration-bed.js";
import { ensureHttpGuestImage, httpGuestCmdline } from "../e2e/guests/http-guest.js";

const BRIDGE = "sfseg";
const GUEST_IP = "10.99.0.200";
const PORT = 8080;
/** BENCH_LIVE_LOG_DIR: keep both ends' logs of each move there; BENCH_LIBXL_LOG_LEVEL (e.g. debug)
 *  makes them carry libxl's own steps (the save's rounds, the restore's devices) and our debug lines. */
const LOG_DIR = process.env.BENCH_LIVE_LOG_DIR;
const LIBXL_LEVEL = process.env.BENCH_LIBXL_LOG_LEVEL;
/** BENCH_LIVE_PCAP=1 (with BENCH_LIVE_LOG_DIR): both dom0s capture the guest's traffic (ARP, IPv6
 *  neighbour discovery, the client's TCP) on every interface during each move, with each packet's
 *  interface and time on that dom0's clock, into <dir>/<move>-<node>.pcap.txt. */
const PCAP = Boolean(LOG_DIR) && process.env.BENCH_LIVE_PCAP === "1";
const CLI_ENV =
  LIBXL_LEVEL && /^[a-z]+$/.test(LIBXL_LEVEL) ? `LIBXL_LOG_LEVEL=${LIBXL_LEVEL} LOG_LEVEL=debug` : "";

export interface MoveResult {
  how: "live" | "stop-and-copy";
  liveUsed: boolean;
  downtimeMs: number;
  totalMs: number;
  bytes: number;
  requestsSent: number;
  requestsFailed: number;
  longestGapMs: number;
  /** Where the downtime went, ms from the guest seen suspended, on the source's clock. */
  sourceTimeline: Record<string, number>;
  /** The target's view, ms from the stream's last byte, on the target's clock; guestLinkUp: its vif's
   *  carrier came up (netfront reconnected, the guest reachable again). */
  targetTimeline: Record<string, number>;
}

export interface LiveBenchResult {
  what: string;
  memoryMiB: number;
  guestType: "pvh";
  moves: MoveResult[];
  liveDowntimeMs: number;
  stopAndCopyDowntimeMs: number;
  liveOverStopAndCopy: number;
  failedRequestsLive: number;
  failedRequestsStopAndCopy: number;
  /** Client samples (ms since the move began, 1 answered / 0 failed), for the plot. */
  samples: Record<string, [number, number][]>;
}

/** A curl loop in dom0: one line per request, `<start ms> <end ms> ok|fail` on dom0's clock. */
async function startClient(
  node: Dom0,
  tag: string,
): Promise<{ stop(): Promise<[number, number, boolean][]> }> {
  const url = `http://${GUEST_IP}:${PORT}/healthz`;
  // A script file: background() execs one command, and a loop is not one.
  writeFileSync(
    join(node.hostDir, `${tag}.sh`),
    `while :; do s=$(date +%s%3N); if curl -sf -m 2 -o /dev/null ${url}; then r=ok; else r=fail; fi; ` +
      `echo "{\\"s\\": $s, \\"e\\": $(date +%s%3N), \\"r\\": \\"$r\\"}"; sleep 0.1; done\n`,
  );
  const { out } = await background(node, tag, `sh ${node.dom0HostDir}/${tag}.sh`);
  return {
    async stop() {
      await signalBackground(node, tag, "TERM");
      return readLines<{ s: number; e: number; r: string }>(out).map((l) => [l.s, l.e, l.r === "ok"]);
    },
  };
}

/** tcpdump in a dom0: ARP, neighbour discovery and the client's port, on every interface. */
async function capture(
  node: Dom0,
  tag: string,
): Promise<{ tag: string; stop(to: string, t0: number): Promise<void> }> {
  const { out } = await background(
    node,
    tag,
    `tcpdump -i any -n -tt -e -l -U arp or rarp or icmp6 or tcp port ${PORT}`,
  );
  return {
    tag: tag.replace(/^pcap-[a-z]+-/, ""),
    async stop(to, t0) {
      await signalBackground(node, tag, "TERM");
      await new Promise((r) => setTimeout(r, 500));
      writeFileSync(to, `# t0 (move start, client's clock) ${t0}\n${readFileSync(out, "utf8")}`);
    },
  };
}

const dom0Now = async (node: Dom0) => Number(await sh(node, "date +%s%3N"));

async function move(
  how: MoveResult["how"],
  from: Dom0,
  to: Dom0,
  client: Dom0,
  domain: { domid: number; specFile: string },
  identity: { file: string; fingerprint: string },
  tag: string,
): Promise<{ result: MoveResult; samples: [number, number][] }> {
  const probe = await startClient(client, `client-${tag}`);
  const captures = PCAP
    ? await Promise.all([capture(from, `pcap-${tag}-src`), capture(to, `pcap-${tag}-dst`)])
    : [];
  // Steady state first: a few answered requests before the move.
  await new Promise((r) => setTimeout(r, 5000));
  const rx = await startReceiver(to, `rx-${tag}`, identity.fingerprint, `--bridge ${BRIDGE}`, CLI_ENV);
  const t0 = await dom0Now(client);
  const s = await sendFrom(from, {
    identityFile: identity.file,
    specFile: domain.specFile,
    domid: domain.domid,
    endpoint: rx.endpoint,
    targetFingerprint: rx.fingerprint,
    live: how === "live",
    fallback: false,
    env: CLI_ENV,
  });
  if (LOG_DIR) {
    mkdirSync(LOG_DIR, { recursive: true });
    writeFileSync(join(LOG_DIR, `${tag}-source.log`), s.stderr);
  }
  if (!s.ok) throw new Error(`${how} move failed: ${JSON.stringify(s.error)}`);
  const landed = await rx.outcome();
  // The guest's network is back when its vif's carrier is (netfront reconnected), on the target's clock.
  const linkUp = await waitFor(
    "the guest's link on the target",
    () => rx.events().find((e) => e.event === "guest-link-up"),
    30_000,
    200,
  ).catch(() => undefined);
  if (LOG_DIR) copyFileSync(rx.logFile, join(LOG_DIR, `${tag}-target.log`));
  // The client's view settles a few seconds after the switch (ARP, the first answers from B).
  await new Promise((r) => setTimeout(r, 5000));
  const t1 = await dom0Now(client);
  for (const c of captures) await c.stop(join(LOG_DIR!, `${tag}-${c.tag}.pcap.txt`), t0);
  const lines = (await probe.stop()).filter(([start]) => start >= t0 && start <= t1);
  const answered = lines.filter(([, , ok]) => ok).map(([, end]) => end);
  let longestGapMs = 0;
  for (let i = 1; i < answered.length; i++)
    longestGapMs = Math.max(longestGapMs, answered[i]! - answered[i - 1]!);
  const result: MoveResult = {
    how,
    liveUsed: s.live === true,
    downtimeMs: s.downtimeMs!,
    totalMs: s.totalMs!,
    bytes: s.bytes!,
    requestsSent: lines.length,
    requestsFailed: lines.filter(([, , ok]) => !ok).length,
    longestGapMs,
    sourceTimeline: s.timeline ?? {},
    targetTimeline: {
      ...landed.timeline,
      ...(typeof linkUp?.msAfterResult === "number" && landed.timeline?.unpaused !== undefined
        ? { guestLinkUp: landed.timeline.unpaused + linkUp.msAfterResult }
        : {}),
    },
  };
  console.log(`${how}: ${JSON.stringify(result)} (target domid ${landed.domid})`);
  return { result, samples: lines.map(([start, , ok]) => [start - t0, ok ? 1 : 0]) };
}

export async function benchLiveMigration(memoryMiB = 128): Promise<LiveBenchResult> {
  const image = await ensureHttpGuestImage();
  const [a, b] = await Promise.all([
    startXenNode({ name: "bench-live-a" }),
    startXenNode({ name: "bench-live-b" }),
  ]);
  try {
    await Promise.all([bridgeSegment(a, BRIDGE), bridgeSegment(b, BRIDGE)]);
    const [idA, idB] = await Promise.all([makeIdentity(a, "a"), makeIdentity(b, "b")]);
    const name = "http-live";
    const created = await createDomain(a, {
      name,
      kernel: image.kernel,
      initrd: image.initrd,
      guestType: "pvh",
      memoryMiB,
      cmdline: `console=hvc0 panic=-1 quiet ${httpGuestCmdline({ ip: `${GUEST_IP}/24`, port: PORT })}`,
      vif: { bridge: BRIDGE, mac: "00:16:3e:5f:00:c8" },
    });
    await waitFor(
      "the http guest answering on A",
      async () =>
        (await a.exec(`curl -sf -m 2 -o /dev/null http://${GUEST_IP}:${PORT}/healthz`)).code === 0 ||
        undefined,
      600_000,
      2000,
    );
    if (PCAP) {
      mkdirSync(LOG_DIR!, { recursive: true });
      const clock = await clockOffset(a, b);
      writeFileSync(join(LOG_DIR!, "clock.json"), `${JSON.stringify({ bMinusAMs: clock })}\n`);
    }
    const live = await move("live", a, b, a, created, idA, "live");
    // Back by stop-and-copy: the domain B restored, with the spec A sent (the CLI wrote it beside it).
    const onB = (await sh(b, `xl domid ${name}`)).trim();
    const specB = join(b.dom0HostDir, `${name}.spec.json`);
    copyFileSync(join(a.hostDir, `${name}.spec.json`), join(b.hostDir, `${name}.spec.json`));
    const cold = await move("stop-and-copy", b, a, a, { domid: Number(onB), specFile: specB }, idB, "cold");
    await sh(a, `xl destroy ${name}`).catch(() => undefined);
    const ratio = Number((live.result.downtimeMs / cold.result.downtimeMs).toFixed(3));
    return {
      what: "the http guest (PVH, Debian kernel + our http app) answering a curl loop in A's dom0 (a request every ~100 ms, 2 s timeout) while it moves A -> B live (pre-copy, HAP log-dirty), then B -> A stop-and-copy, through the node agent's migration code (dom0 CLI); downtime = the source's measure (guest suspended -> target running), requests counted from the move's start to 5 s after it",
      memoryMiB,
      guestType: "pvh",
      moves: [live.result, cold.result],
      liveDowntimeMs: live.result.downtimeMs,
      stopAndCopyDowntimeMs: cold.result.downtimeMs,
      liveOverStopAndCopy: ratio,
      failedRequestsLive: live.result.requestsFailed,
      failedRequestsStopAndCopy: cold.result.requestsFailed,
      samples: { live: live.samples, "stop-and-copy": cold.samples },
    };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}
