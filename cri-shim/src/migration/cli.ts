// A small dom0 tool for the migration tests and bench/migrate.ts, which drive dom0 over exec: every
// subcommand prints JSON on stdout (one object, or one per line for the long-running ones), logs go
// to stderr. Exit code 0 = success, 1 = a MigrationError/failure (printed as {"error": ...}), 2 = usage.
//   identity --out FILE                       fresh identity into FILE (0600); prints {fingerprint}
//   create --kernel K --name N --memory-mib M [--cmdline C] [--initrd F] [--guest-type pv|pvh]
//          [--bridge B --mac M] --spec-out FILE
//                                             builds + unpauses a domain with the driver; prints {domid}
//   send --identity FILE --spec FILE --domid N --endpoint H:P --target-fingerprint FP [--cold] [--no-fallback] [--timeout-ms T]
//   receive --host H --source-fingerprint FP [--bridge B] [--timeout-ms T] [--progress-every BYTES]
//                                             lines: {event:"listening",port,fingerprint}, {event:"progress",bytes},
//                                             then {event:"result",...} or {event:"error",...}; SIGTERM cancels
//   watch-console --name N                    lines: {at, line} for each console line of domain N
//   clock-serve --host H                      line: {port}; answers each connection with this clock (ms)
//   clock-probe --peer H:P                    prints {offsetMs, uncertaintyMs}: the peer's clock minus this one
//   list                                      prints the domains
// The backend is the shim's: SUPERFLUID_HYPERVISOR=lean|libxl as for the shim, its default otherwise
// (lean without a pool, and without reaping other processes' shells: a shim may run beside it).
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { parseArgs } from "node:util";
import { ConsoleTail, guestConsoleLogPath } from "../hypervisor/console.js";
import type { DomainSpec, Hypervisor } from "../hypervisor/types.js";
import { XenLibxl } from "../hypervisor/xen-libxl.js";
import { XenLean } from "../hypervisor/xen-lean/xen-lean.js";
import { DEFAULT_HYPERVISOR } from "../hypervisor/backend.js";
import { announceGuest, guestPorts } from "../network/announce.js";
import { waitForCarrier } from "../network/wait-interface.js";
import { MigrationError } from "./errors.js";
import { type MigrationIdentity, createIdentity } from "./identity.js";
import { receiveDomain } from "./receive.js";
import { parseEndpoint, sendDomain } from "./send.js";

const { positionals, values: a } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: "string" },
    kernel: { type: "string" },
    initrd: { type: "string" },
    "guest-type": { type: "string" },
    name: { type: "string" },
    "memory-mib": { type: "string" },
    cmdline: { type: "string" },
    bridge: { type: "string" },
    mac: { type: "string" },
    "spec-out": { type: "string" },
    identity: { type: "string" },
    spec: { type: "string" },
    domid: { type: "string" },
    endpoint: { type: "string" },
    "target-fingerprint": { type: "string" },
    cold: { type: "boolean" },
    "no-fallback": { type: "boolean" },
    "timeout-ms": { type: "string" },
    host: { type: "string" },
    "source-fingerprint": { type: "string" },
    "progress-every": { type: "string" },
    peer: { type: "string" },
  },
});

const print = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);
const now = (): number => performance.timeOrigin + performance.now();

function need(name: keyof typeof a): string {
  const v = a[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}
function num(name: keyof typeof a): number {
  const v = Number(need(name));
  if (!Number.isFinite(v)) throw new UsageError(`--${name} must be a number`);
  return v;
}
const optionalNum = (name: keyof typeof a): number | undefined =>
  a[name] === undefined ? undefined : num(name);
class UsageError extends Error {}

async function openHv(): Promise<Hypervisor> {
  const kind = process.env.SUPERFLUID_HYPERVISOR || DEFAULT_HYPERVISOR;
  if (kind !== "lean" && kind !== "libxl")
    throw new UsageError(`SUPERFLUID_HYPERVISOR: lean or libxl, got ${kind}`);
  const libxl = XenLibxl.open();
  if (kind === "libxl") return libxl;
  return XenLean.open(libxl, { poolDepth: 0, poolMaxMiB: 0, reapStaleShells: false });
}

/** The lean backend's last in-process save/restore phases (undefined for libxl's). */
function phasesOf(hv: Hypervisor): ReturnType<XenLean["streamPhases"]> | undefined {
  return hv instanceof XenLean ? hv.streamPhases() : undefined;
}

async function withHv<T>(fn: (hv: Hypervisor) => Promise<T>): Promise<T> {
  const hv = await openHv();
  try {
    return await fn(hv);
  } finally {
    await hv.close();
  }
}

const commands: Record<string, () => Promise<void>> = {
  async identity() {
    const out = need("out");
    const id = await createIdentity(a.name ?? "superfluid-migration");
    writeFileSync(out, JSON.stringify(id), { mode: 0o600 });
    print({ fingerprint: id.fingerprint });
  },
  async create() {
    const guestType = a["guest-type"] ?? "pv";
    if (guestType !== "pv" && guestType !== "pvh") throw new UsageError("--guest-type: pv or pvh");
    const spec: DomainSpec = {
      name: need("name"),
      kernelPath: need("kernel"),
      ...(a.initrd ? { initrdPath: a.initrd } : {}),
      cmdline: a.cmdline ?? "",
      memoryMiB: num("memory-mib"),
      vcpus: 1,
      guestType,
      vifs: a.bridge ? [{ bridge: a.bridge, mac: need("mac") }] : [],
    };
    await withHv(async (hv) => {
      const domid = await hv.createPaused(spec);
      await hv.unpause(domid);
      writeFileSync(need("spec-out"), JSON.stringify(spec));
      print({ domid });
    });
  },
  async send() {
    const identity = JSON.parse(readFileSync(need("identity"), "utf8")) as MigrationIdentity;
    const spec = JSON.parse(readFileSync(need("spec"), "utf8")) as DomainSpec;
    await withHv(async (hv) => {
      const r = await sendDomain({
        hv,
        domid: num("domid"),
        spec,
        endpoint: need("endpoint"),
        identity,
        targetFingerprint: need("target-fingerprint"),
        live: !a.cold,
        stopAndCopyFallback: !a["no-fallback"],
        timeoutMs: optionalNum("timeout-ms"),
      });
      print({ event: "result", ...r, phases: phasesOf(hv)?.lastSave, at: now() });
    });
  },
  async receive() {
    const sourceFingerprint = need("source-fingerprint");
    const every = optionalNum("progress-every") ?? 1024 * 1024;
    const identity = await createIdentity("superfluid-migration-target");
    await withHv(async (hv) => {
      let reported = 0;
      const incoming = await receiveDomain({
        hv,
        host: need("host"),
        identity,
        timeoutMs: optionalNum("timeout-ms"),
        sourceFingerprint: async () => sourceFingerprint,
        targetSpec: (s) => ({ ...s, vifs: s.vifs.map((v) => ({ ...v, bridge: a.bridge ?? v.bridge })) }),
        onUnpaused: (domid, spec) => announceGuest(guestPorts(domid, spec.vifs)),
        onProgress: (bytes) => {
          if (bytes - reported < every) return;
          reported = bytes;
          print({ event: "progress", bytes, at: now() });
        },
      });
      const cancel = (): void => void incoming.cancel("SIGTERM");
      process.once("SIGTERM", cancel);
      print({ event: "listening", port: incoming.port, fingerprint: identity.fingerprint });
      try {
        const r = await incoming.result;
        print({
          event: "result",
          domid: r.domid,
          bytes: r.bytes,
          restoreMs: r.restoreMs,
          timeline: r.timeline,
          phases: phasesOf(hv)?.lastRestore,
          name: r.sourceSpec.name,
          at: now(),
        });
        // The guest's network is back once netfront reconnected (its vifs' carrier up): reported, and
        // waited for before this process tears down, which would compete with the guest's resume for
        // dom0's CPU (a node agent stays up; a process per migration should not cost the guest).
        const resultAt = performance.now();
        const waits = await Promise.all(
          guestPorts(r.domid, r.sourceSpec.vifs).map((p) => waitForCarrier(p.ifname, 15_000)),
        );
        if (waits.length > 0)
          print({
            event: "guest-link-up",
            msAfterResult: waits.some((w) => w === undefined)
              ? null
              : Math.round(performance.now() - resultAt),
            at: now(),
          });
      } finally {
        process.off("SIGTERM", cancel);
      }
    });
  },
  async "watch-console"() {
    const tail = await new ConsoleTail(guestConsoleLogPath(need("name")), { pollMs: 20 }).start();
    tail.on("line", (line) => print({ at: now(), line: line.trimEnd() }));
    await new Promise<void>((resolve) => process.once("SIGTERM", resolve));
    tail.stop();
  },
  async "clock-serve"() {
    const server = net.createServer((s) => s.end(`${now()}\n`)).listen(0, need("host"));
    await new Promise((r) => server.once("listening", r));
    print({ port: (server.address() as net.AddressInfo).port });
    await new Promise<void>((resolve) => process.once("SIGTERM", resolve));
    server.close();
  },
  async "clock-probe"() {
    const { host, port } = parseEndpoint(need("peer"));
    let best = { offsetMs: 0, uncertaintyMs: Infinity };
    for (let i = 0; i < 12; i++) {
      const t0 = now();
      const peer = await new Promise<number>((resolve, reject) => {
        let text = "";
        net
          .connect(port, host)
          .on("data", (d) => (text += String(d)))
          .on("end", () => resolve(Number(text)))
          .on("error", reject);
      });
      const t1 = now();
      // Half the round trip bounds the error; keep the tightest sample.
      if ((t1 - t0) / 2 < best.uncertaintyMs)
        best = { offsetMs: peer - (t0 + t1) / 2, uncertaintyMs: (t1 - t0) / 2 };
    }
    print({
      offsetMs: Math.round(best.offsetMs * 10) / 10,
      uncertaintyMs: Math.round(best.uncertaintyMs * 10) / 10,
    });
  },
  async list() {
    await withHv(async (hv) =>
      print((await hv.list()).map((d) => ({ ...d, cpuTimeNs: String(d.cpuTimeNs) }))),
    );
  },
};

const command = commands[positionals[0] ?? ""];
if (!command) {
  process.stderr.write(
    `usage: cli.js ${Object.keys(commands).join("|")} [options] (see the head of cli.ts)\n`,
  );
  process.exit(2);
}
try {
  await command();
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  const e =
    err instanceof MigrationError
      ? { reason: err.reason, message: err.message, sourceResumed: err.sourceResumed }
      : { reason: "Failed", message: String(err) };
  print({ event: "error", error: e, at: now() });
  process.exit(1);
}
