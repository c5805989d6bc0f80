// The vif wiring's two steps (startWiring) against a double of our own WireDeps (no Xen).
import test from "ava";
import { HypervisorError } from "../types.js";
import { startWiring, type WireDeps, type Wiring } from "./vif-wire.js";

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
const tick = () => new Promise((r) => setImmediate(r));

/** WireDeps whose XenStore writes and guard the test settles by hand. */
function deps() {
  const writes: Array<{ devid: number; d: ReturnType<typeof deferred<void>> }> = [];
  const guard = deferred();
  let reads = 0;
  const calls: string[] = [];
  const d: WireDeps = {
    vifWrite: async (_domid, devid) => {
      calls.push(`write ${devid}`);
      const w = deferred();
      writes.push({ devid, d: w });
      await w.promise;
      return { writesUs: 1500, commitUs: 500, attempts: 1, batched: devid === 0 };
    },
    guard: (domid, vifs) => {
      calls.push(`guard ${domid} ${vifs.length}`);
      reads++;
      return guard.promise;
    },
    tableReads: () => reads,
  };
  return { d, writes, guard, calls };
}
const spec = {
  name: "vm",
  vifs: [
    { bridge: "xenbr0", mac: "00:16:3e:00:00:01", ip: "10.0.0.2" },
    { bridge: "xenbr0", mac: "00:16:3e:00:00:02" },
  ],
};
const settledOf = async (w: Wiring) => {
  const s = { written: false, done: false };
  void w.written.then(() => (s.written = true));
  void w.done.then(() => (s.done = true)).catch(() => undefined);
  await tick();
  return s;
};

test("the guard runs beside the XenStore writes; done needs both, written only the writes", async (t) => {
  const x = deps();
  let phases: Record<string, number> | undefined;
  const w = startWiring(x.d, 5, spec, (p) => (phases = p));
  await tick();
  t.deepEqual(x.calls, ["write 0", "guard 5 2"], "guard started before the first write returned");
  x.writes[0]!.d.resolve();
  await tick();
  t.deepEqual(x.calls, ["write 0", "guard 5 2", "write 1"], "one vif's transaction after the other");
  x.writes[1]!.d.resolve();
  t.deepEqual(await settledOf(w), { written: true, done: false });
  x.guard.resolve();
  await w.done;
  t.is(phases?.attempts, 2);
  t.is(phases?.batched, 1);
  t.is(phases?.writesMs, 3);
  t.is(phases?.commitMs, 1);
  t.is(phases?.guardTableReads, 1);
});

test("a failed guard fails done (after the writes settled) with the vm named; written still resolves", async (t) => {
  const x = deps();
  let phases: unknown;
  const w = startWiring(x.d, 5, spec, (p) => (phases = p));
  x.guard.reject(new Error("nft: table busy"));
  await tick();
  t.deepEqual(await settledOf(w), { written: false, done: false }, "done waits for the writes");
  x.writes[0]!.d.resolve();
  await tick();
  x.writes[1]!.d.resolve();
  await w.written;
  const err = await t.throwsAsync(w.done);
  t.regex(err.message, /create vm: anti-spoofing for its vifs: Error: nft: table busy/);
  t.is(phases, undefined);
});

test("a failed XenStore write rejects written and done", async (t) => {
  const x = deps();
  const w = startWiring(x.d, 5, spec, () => undefined);
  x.guard.resolve();
  x.writes[0]!.d.reject(new HypervisorError("bridge xenbr0 does not exist in dom0", "NotFound"));
  await t.throwsAsync(w.written, { message: /does not exist/ });
  await t.throwsAsync(w.done, { message: /does not exist/ });
  t.deepEqual(x.calls, ["write 0", "guard 5 2"], "no second vif after a failed one");
});
