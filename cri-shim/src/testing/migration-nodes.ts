// TEST DOUBLE setup for the migration stream's host tests: two "nodes" (in-memory hypervisor doubles),
// a running domain on the first, a fresh identity each, and the options both sides of a loopback
// migration start from (tests spread them and add what they test).
import type { DomainSpec } from "../hypervisor/types.js";
import { createIdentity, type MigrationIdentity } from "../migration/identity.js";
import type { ReceiveOptions } from "../migration/receive.js";
import type { SendOptions } from "../migration/send.js";
import { MemoryHypervisorDouble } from "./memory-hypervisor.js";

export const TEST_DOMAIN_SPEC: DomainSpec = {
  name: "sf-mig",
  kernelPath: "/k",
  cmdline: "x",
  memoryMiB: 8,
  vcpus: 1,
  guestType: "pv",
  vifs: [],
};

export interface TwoNodes {
  a: MemoryHypervisorDouble;
  b: MemoryHypervisorDouble;
  domid: number;
  src: MigrationIdentity;
  dst: MigrationIdentity;
}

/** Two doubles, the domain running on `a`; closed by the caller's teardown when one is given. */
export async function twoNodes(t?: { teardown(fn: () => Promise<void>): void }): Promise<TwoNodes> {
  const a = new MemoryHypervisorDouble();
  const b = new MemoryHypervisorDouble();
  t?.teardown(async () => {
    await a.close();
    await b.close();
  });
  const domid = await a.createPaused(TEST_DOMAIN_SPEC);
  await a.unpause(domid);
  const [src, dst] = await Promise.all([createIdentity("source"), createIdentity("target")]);
  return { a, b, domid, src, dst };
}

/** The target's options on loopback, pinned to the source's identity, restoring under the same spec. */
export const receiveOn = (n: TwoNodes): ReceiveOptions => ({
  hv: n.b,
  host: "127.0.0.1",
  identity: n.dst,
  sourceFingerprint: async () => n.src.fingerprint,
  targetSpec: (s) => s,
});

/** The source's options towards a target listening on `port`. */
export const sendTo = (n: TwoNodes, port: number, live: boolean): SendOptions => ({
  hv: n.a,
  domid: n.domid,
  spec: TEST_DOMAIN_SPEC,
  endpoint: `127.0.0.1:${port}`,
  identity: n.src,
  targetFingerprint: n.dst.fingerprint,
  live,
});
