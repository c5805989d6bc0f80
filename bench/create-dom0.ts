// Runs INSIDE dom0 of an emulated Xen node (bench/create.ts starts it). Times building a paused
// `hello` domain with one vif on the node bridge, interleaved, N rounds of each variant:
//   lean warm  (the xen-lean backend, a shell of the shape ready in its pool)
//   lean cold  (the xen-lean backend, no pool: shell built on the request path)
//   libxl      (the xen-libxl backend: libxl in-process, hotplug scripts for the vif)
//   xl         (`xl create -p`)
// (createMs: until the paused domain is returned; attachedMs: until its vif is also on the bridge,
// which libxl and xl wait for inside create and the lean backend before unpause), then unpauses each
// and waits for its ready line (so every build is known to boot), and times the
// destroy (ours vs `xl destroy`). Counts, from the system: XenStore writes per VM from xenstored's
// trace (by connection: the dom0 kernel's and xenconsoled's own writes are reported apart) and
// processes created per VM from the kernel's task_newtask tracepoint (threads and kernel threads
// left out). Prints one JSON line on stdout.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { XenLibxl } from "../cri-shim/src/hypervisor/xen-libxl.js";
import { XenLean } from "../cri-shim/src/hypervisor/xen-lean/xen-lean.js";
import type { DomainSpec, Hypervisor } from "../cri-shim/src/hypervisor/types.js";

const [kernel, memoryArg, roundsArg, bridge] = process.argv.slice(2) as [string, string, string, string];
const memoryMiB = Number(memoryArg);
const rounds = Number(roundsArg);
const READY = "hello: ready in";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const consoleLog = (name: string) => `/var/log/xen/console/guest-${name}.log`;

async function waitFor(what: string, ok: () => boolean, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
const ready = (name: string) => () =>
  existsSync(consoleLog(name)) && readFileSync(consoleLog(name), "utf8").includes(READY);

function spec(name: string): DomainSpec {
  return {
    name,
    kernelPath: kernel,
    cmdline: "",
    memoryMiB,
    vcpus: 1,
    guestType: "pv",
    vifs: [{ bridge, mac: "00:16:3e:5b:00:01" }],
  };
}

interface Variant {
  name: string;
  create(name: string): Promise<number>;
  /** Resolves when the vif is on the bridge (libxl and xl return only then). */
  attached?(domid: number): Promise<void>;
  unpause(domid: number, name: string): Promise<void>;
  destroy(domid: number, name: string): Promise<void>;
  before?(): Promise<void>;
}

function ours(label: string, hv: Hypervisor, before?: () => Promise<void>): Variant {
  return {
    name: label,
    create: (name) => hv.createPaused(spec(name)),
    attached: hv instanceof XenLean ? (domid) => hv.vifsAttached(domid) : undefined,
    unpause: (domid) => hv.unpause(domid),
    destroy: (domid) => hv.destroy(domid),
    before,
  };
}

const xl: Variant = {
  name: "xl",
  async create(name) {
    const cfg = `/tmp/${name}.cfg`;
    writeFileSync(
      cfg,
      `name="${name}"\ntype="pv"\nkernel="${kernel}"\nmemory=${memoryMiB}\nvcpus=1\nvif=["bridge=${bridge},mac=00:16:3e:5b:00:01"]\n`,
    );
    execFileSync("xl", ["create", "-p", cfg], { stdio: "ignore" });
    rmSync(cfg, { force: true });
    return Number(execFileSync("xl", ["domid", name], { encoding: "utf8" }).trim());
  },
  async unpause(_domid, name) {
    execFileSync("xl", ["unpause", name], { stdio: "ignore" });
  },
  async destroy(_domid, name) {
    execFileSync("xl", ["destroy", name], { stdio: "ignore" });
  },
};

// --- counting ---------------------------------------------------------------------------------
const TRACING = "/sys/kernel/tracing";
const CLONE_THREAD = 0x10000;
if (!existsSync(`${TRACING}/events/task/task_newtask`))
  execFileSync("mount", ["-t", "tracefs", "nodev", TRACING]);
const NEWTASK = /^\s*(.+)-(\d+)\s+\[\d+\].*task_newtask: pid=(\d+) comm=(.*) clone_flags=([0-9a-f]+)/;

/** Processes created during `fn` (the kernel's task_newtask tracepoint: not threads, not kernel threads). */
async function countProcesses(
  fn: () => Promise<void>,
): Promise<{ n: number; comms: string[]; kernelHelpers: number }> {
  writeFileSync(`${TRACING}/trace`, "");
  writeFileSync(`${TRACING}/events/task/task_newtask/enable`, "1");
  try {
    await fn();
  } finally {
    writeFileSync(`${TRACING}/events/task/task_newtask/enable`, "0");
  }
  const procs = readFileSync(`${TRACING}/trace`, "utf8")
    .split("\n")
    .map((l) => NEWTASK.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .filter((m) => m[1]!.trim() !== "kthreadd" && (parseInt(m[5]!, 16) & CLONE_THREAD) === 0);
  // A kworker forking is the kernel's own usermode helper (uevents of the new netdev and xenbus
  // device), whoever the toolstack is: reported apart, not a process the toolstack spawned.
  const helper = (m: RegExpExecArray) => m[1]!.trim().startsWith("kworker/");
  const own = procs.filter((m) => !helper(m));
  return {
    n: own.length,
    comms: own.map((m) => `${m[1]!.trim()}>${m[4]}`),
    kernelHelpers: procs.length - own.length,
  };
}

const XS_WRITE = /^IN (\S+) \d{8} \S+ (WRITE|MKDIR|SET_PERMS|RM) \((.*)\)$/;
/** XenStore writes during `fn`, from xenstored's trace: the toolstack's (every connection but the
 *  dom0 kernel's, known by netback's InitWait, and xenconsoled's, known by the pty it writes to console/tty) and all. */
async function countXenstoreWrites(fn: () => Promise<void>): Promise<{ toolstack: number; all: number }> {
  const file = `/tmp/xs-trace-${process.pid}-${Date.now()}`;
  execFileSync("xenstore-control", ["logfile", file]);
  execFileSync("xenstore-control", ["log", "on"]);
  try {
    await fn();
    await sleep(500); // let netback and xenconsoled finish reacting
  } finally {
    execFileSync("xenstore-control", ["log", "off"]);
  }
  const writes = readFileSync(file, "utf8")
    .split("\n")
    .map((l) => XS_WRITE.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => {
      const [path = "", ...rest] = m[3]!.split(" ");
      return { conn: m[1]!, op: m[2]!, path, value: rest.join(" ").trim() };
    });
  if (process.env.BENCH_TRACE_DUMP) process.stderr.write(readFileSync(file, "utf8"));
  rmSync(file, { force: true });
  const system = new Set(
    writes
      .filter(
        (w) =>
          (w.op === "WRITE" && /(^|\/)backend\/vif\/\d+\/\d+\/state$/.test(w.path) && w.value === "2") ||
          (/\/console\/tty$/.test(w.path) && w.value.startsWith("/dev/")),
      )
      .map((w) => w.conn),
  );
  return { toolstack: writes.filter((w) => !system.has(w.conn)).length, all: writes.length };
}

// --- run --------------------------------------------------------------------------------------
const libxl = XenLibxl.open();
const cold = await XenLean.open(libxl, { poolDepth: 0, poolMaxMiB: 0 });
const warm = await XenLean.open(libxl, {
  poolDepth: 1,
  poolMaxMiB: memoryMiB * 2,
  poolShapes: [{ memoryMiB, maxMemoryMiB: memoryMiB, vcpus: 1, maxVcpus: 1 }],
});
const variants: Variant[] = [
  ours("leanWarm", warm, () => warm.pool.idle()),
  ours("leanCold", cold),
  ours("libxl", libxl),
  xl,
];
/** What one variant's single counted create + destroy did to the system. */
export interface VariantCounts {
  xenstoreWrites: number;
  xenstoreWritesAll: number;
  processes: number;
  destroyProcesses: number;
  kernelHelpers: number;
  spawned: string[];
}
/** The JSON line this program prints; ms per variant, one entry per round. */
export interface Dom0Result {
  createMs: Record<string, number[]>;
  attachedMs: Record<string, number[]>;
  readyMs: Record<string, number[]>;
  destroyMs: Record<string, number[]>;
  counts: Record<string, VariantCounts>;
}
const { createMs, attachedMs, readyMs, destroyMs, counts }: Dom0Result = {
  createMs: {},
  attachedMs: {},
  readyMs: {},
  destroyMs: {},
  counts: {},
};
let seq = 0;

async function one(v: Variant, record: boolean): Promise<void> {
  const name = `b-${v.name}-${seq++}`;
  rmSync(consoleLog(name), { force: true });
  await v.before?.();
  const t0 = performance.now();
  const domid = await v.create(name);
  const t1 = performance.now();
  await v.attached?.(domid);
  const tA = performance.now();
  await v.unpause(domid, name);
  await waitFor(`${name}'s ready line`, ready(name));
  const t2 = performance.now();
  await v.destroy(domid, name);
  const t3 = performance.now();
  await waitFor(`vif${domid}.0 to go`, () => !existsSync(`/sys/class/net/vif${domid}.0`), 30_000);
  rmSync(consoleLog(name), { force: true });
  if (!record) return;
  (createMs[v.name] ??= []).push(t1 - t0);
  (attachedMs[v.name] ??= []).push(tA - t0);
  (readyMs[v.name] ??= []).push(t2 - t1);
  (destroyMs[v.name] ??= []).push(t3 - t2);
}

for (const v of variants) await one(v, false); // warm-up: libraries, thread pools, page cache

for (const v of variants) {
  await v.before?.();
  const name = `c-${v.name}`;
  let domid = 0;
  let xs = { toolstack: 0, all: 0 };
  let created = { n: 0, comms: [] as string[], kernelHelpers: 0 };
  // Processes counted inside the XenStore window: xenstore-control's own runs stay out of it.
  xs = await countXenstoreWrites(async () => {
    created = await countProcesses(async () => {
      domid = await v.create(name);
      await v.attached?.(domid);
    });
  });
  const destroyed = await countProcesses(async () => {
    await v.destroy(domid, name);
    await waitFor(`vif${domid}.0 to go`, () => !existsSync(`/sys/class/net/vif${domid}.0`), 30_000);
  });
  rmSync(consoleLog(name), { force: true });
  counts[v.name] = {
    xenstoreWrites: xs.toolstack,
    xenstoreWritesAll: xs.all,
    processes: created.n,
    destroyProcesses: destroyed.n,
    kernelHelpers: created.kernelHelpers + destroyed.kernelHelpers,
    spawned: [...new Set([...created.comms, ...destroyed.comms])],
  };
}

for (let i = 0; i < rounds; i++) {
  // Interleaved, the order rotating each round, so drift in the emulator's speed hits all alike.
  for (let j = 0; j < variants.length; j++) await one(variants[(i + j) % variants.length]!, true);
}
await warm.pool.close();
await libxl.close();
console.log(JSON.stringify({ createMs, attachedMs, readyMs, destroyMs, counts }));
process.exit(0);
