// The target announces a migrated guest (announce.ts), on two emulated Xen nodes whose segment NICs
// sit in a bridge with the guests' vifs (as in bench:migrate's live part). The guest is a PVH hello:
// it never sends a frame, so whatever the bridges know of its MAC after the move, the target's dom0
// told them. Moved live A -> B through the migration CLI, A's bridge (whose vif for it is gone) must
// send the MAC out of its segment NIC, towards B, and B's must not send it back (it floods it, the
// new vif included, until the guest speaks: a dynamic entry cannot point at a vif whose frontend
// has not connected yet).
import test from "ava";
import { existsSync } from "node:fs";
import { startXenNode } from "../../../e2e/xen-node/index.js";
import {
  type Dom0,
  HELLO_KERNEL,
  bridgeSegment,
  createDomain,
  makeIdentity,
  sendFrom,
  sh,
  startReceiver,
} from "../../../e2e/harness/migration-bed.js";

const BRIDGE = "sfseg";
const MAC = "00:16:3e:5f:00:c9";

/** The ports the bridge sends MAC to (`bridge fdb show`), e.g. ["eth1"]. */
async function portsOf(node: Dom0): Promise<string[]> {
  const fdb = await sh(node, `bridge fdb show br ${BRIDGE}`);
  return fdb
    .split("\n")
    .filter((l) => l.startsWith(`${MAC} dev `))
    .map((l) => l.split(" ")[2]!);
}

test("after a live move the segment's bridges send the guest's MAC towards the target", async (t) => {
  t.timeout(30 * 60_000);
  if (!existsSync(HELLO_KERNEL)) return t.fail(`${HELLO_KERNEL} is missing (make -C native)`);
  const [a, b] = await Promise.all([
    startXenNode({ name: "announce-a" }),
    startXenNode({ name: "announce-b" }),
  ]);
  t.teardown(() => Promise.all([a.stop(), b.stop()]).then(() => undefined));
  await Promise.all([bridgeSegment(a, BRIDGE), bridgeSegment(b, BRIDGE)]);
  const idA = await makeIdentity(a, "a");
  const created = await createDomain(a, {
    name: "hello-announce",
    kernel: HELLO_KERNEL,
    guestType: "pvh",
    memoryMiB: 32,
    cmdline: "interval=1",
    vif: { bridge: BRIDGE, mac: MAC },
  });
  t.deepEqual(await portsOf(b), [], "B has not heard of the guest (hello sends nothing)");
  const rx = await startReceiver(b, "rx-announce", idA.fingerprint, `--bridge ${BRIDGE}`);
  const s = await sendFrom(a, {
    identityFile: idA.file,
    specFile: created.specFile,
    domid: created.domid,
    endpoint: rx.endpoint,
    targetFingerprint: rx.fingerprint,
    live: true,
    fallback: false,
  });
  if (!s.ok) return t.fail(`the move failed: ${JSON.stringify(s.error)}\n${s.stderr.slice(-3000)}`);
  const landed = await rx.outcome();
  t.is(landed.event, "result", JSON.stringify(landed));
  t.true(s.live, "moved live (PVH on HAP)");
  t.false((await portsOf(b)).includes("eth1"), "B does not send the guest's MAC back to the segment");
  t.deepEqual(await portsOf(a), ["eth1"], "A sends the guest's MAC to the segment, towards B");
});
