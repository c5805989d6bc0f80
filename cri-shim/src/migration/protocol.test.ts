// The protocol end to end over real TLS on loopback, with the in-memory hypervisor double on both
// sides (libxl's real stream and the faults mid-stream are in migrate.xen.test.ts).
import net from "node:net";
import test from "ava";
import { MemoryHypervisorDouble } from "../testing/memory-hypervisor.js";
import type { DomainSpec } from "../hypervisor/types.js";
import { TEST_DOMAIN_SPEC, twoNodes } from "../testing/migration-nodes.js";
import { MigrationError, createIdentity, receiveDomain, sendDomain } from "./index.js";

const spec = TEST_DOMAIN_SPEC;

/** One move from a to b (the target keeps the source's spec unless told otherwise). */
async function move(
  nodes: Awaited<ReturnType<typeof twoNodes>>,
  o: { live: boolean; targetSpec?: (s: DomainSpec) => DomainSpec; onProgress?: (n: number) => void },
) {
  const { a, b, domid, src, dst } = nodes;
  const incoming = await receiveDomain({
    hv: b,
    host: "127.0.0.1",
    identity: dst,
    sourceFingerprint: async () => src.fingerprint,
    targetSpec: o.targetSpec ?? ((s) => s),
  });
  const sent = await sendDomain({
    hv: a,
    domid,
    spec,
    endpoint: `127.0.0.1:${incoming.port}`,
    identity: src,
    targetFingerprint: dst.fingerprint,
    live: o.live,
    onProgress: o.onProgress,
  });
  return { sent, got: await incoming.result, port: incoming.port };
}

test("a domain moves: gone on the source, running on the target under the target's spec", async (t) => {
  const nodes = await twoNodes(t);
  const { a, b } = nodes;
  const progress: number[] = [];
  const { sent, got, port } = await move(nodes, {
    live: true,
    targetSpec: (s) => ({ ...s, name: `${s.name}-b` }),
    onProgress: (n) => progress.push(n),
  });
  t.deepEqual(await a.list(), [], "source domain destroyed");
  const there = await b.info(got.domid);
  t.is(there?.state, "running");
  t.is(there?.name, "sf-mig-b");
  t.deepEqual(got.sourceSpec, spec);
  t.true(sent.bytes > 0 && sent.bytes === got.bytes, `bytes ${sent.bytes} / ${got.bytes}`);
  t.is(progress.at(-1), sent.bytes);
  t.true(sent.downtimeMs >= 0 && sent.downtimeMs <= sent.totalMs);
  await t.throwsAsync(() => connectOnce(port), undefined, "the listener is closed after the migration");
});

test("live asked on a Xen without log-dirty: restarted stop-and-copy on the same connection, or refused", async (t) => {
  const { a, b, domid, src, dst } = await twoNodes(t);
  a.liveMigrationUnsupported = true;
  const receive = () =>
    receiveDomain({
      hv: b,
      host: "127.0.0.1",
      identity: dst,
      sourceFingerprint: async () => src.fingerprint,
      targetSpec: (s) => s,
    });
  const send = (port: number, stopAndCopyFallback?: boolean) =>
    sendDomain({
      hv: a,
      domid,
      spec,
      endpoint: `127.0.0.1:${port}`,
      identity: src,
      targetFingerprint: dst.fingerprint,
      live: true,
      stopAndCopyFallback,
    });

  const refused = await receive();
  const err = await t.throwsAsync(send(refused.port, false), { instanceOf: MigrationError });
  t.is(err?.reason, "LiveMigrationUnsupported");
  t.true(err?.sourceResumed);
  t.is((await a.info(domid))?.state, "running");
  t.is(
    (await t.throwsAsync(refused.result, { instanceOf: MigrationError }))?.reason,
    "LiveMigrationUnsupported",
  );
  t.deepEqual(await b.list(), [], "the first restore attempt left nothing");

  const incoming = await receive();
  const restoresBefore = b.restoresStarted;
  const sent = await send(incoming.port);
  t.false(sent.live, "the result says stop-and-copy was used");
  const got = await incoming.result;
  t.is((await b.info(got.domid))?.state, "running");
  t.is((await b.list()).length, 1, "only the second attempt's domain exists on the target");
  t.is(b.restoresStarted - restoresBefore, 2, "libxl's header came first: the target started over");
  t.deepEqual(await a.list(), []);
});

test("the source stops its guest only once the target's domain is prepared", async (t) => {
  const nodes = await twoNodes(t);
  const { a, b } = nodes;
  b.prepareDelayMs = 300;
  await move(nodes, { live: false });
  t.truthy(b.preparedAt && a.migrateOutAt);
  t.true(a.migrateOutAt! >= b.preparedAt!, `save at ${a.migrateOutAt}, prepared at ${b.preparedAt}`);
});

test("live impossible before the first byte (lean): the target's restore in progress waits on", async (t) => {
  const nodes = await twoNodes(t);
  const { a, b } = nodes;
  a.liveMigrationUnsupported = true;
  a.liveFailsBeforeFirstByte = true;
  const { sent, got } = await move(nodes, { live: true });
  t.false(sent.live);
  t.is((await b.info(got.domid))?.state, "running");
  t.is(b.restoresStarted, 1, "one restore, kept across the restart");
  t.is((await b.list()).length, 1);
  t.deepEqual(await a.list(), []);
});

test("source pins the wrong target: PeerRejected, domain runs on, the target got nothing", async (t) => {
  const { a, b, domid, src, dst } = await twoNodes(t);
  const impostor = await createIdentity("impostor");
  let targetBytes = 0;
  const incoming = await receiveDomain({
    hv: b,
    host: "127.0.0.1",
    identity: impostor,
    sourceFingerprint: async () => src.fingerprint,
    targetSpec: (s) => s,
    onProgress: (n) => (targetBytes = n),
  });
  const err = await t.throwsAsync(
    sendDomain({
      hv: a,
      domid,
      spec,
      endpoint: `127.0.0.1:${incoming.port}`,
      identity: src,
      targetFingerprint: dst.fingerprint,
      live: true,
    }),
    { instanceOf: MigrationError },
  );
  t.is(err?.reason, "PeerRejected");
  t.true(err?.sourceResumed);
  t.is((await a.info(domid))?.state, "running");
  await incoming.cancel("test over");
  t.is((await t.throwsAsync(incoming.result, { instanceOf: MigrationError }))?.reason, "Cancelled");
  t.is(targetBytes, 0);
  t.deepEqual(await b.list(), []);
});

test("target pins another source: the connection is dropped, PeerRejected, the target keeps waiting", async (t) => {
  const nodes = await twoNodes(t);
  const { a, b, domid } = nodes;
  const other = await createIdentity("other-source");
  const { err, incoming } = await failedMove(nodes, other.fingerprint, t);
  t.is(err?.reason, "PeerRejected");
  t.true(err?.sourceResumed);
  t.is((await a.info(domid))?.state, "running", "the source never suspended");
  await connectOnce(incoming.port); // still listening for the right source
  await incoming.cancel("test over");
  t.deepEqual(await b.list(), []);
});

test("target without memory: TargetOutOfMemory before the source stops its domain", async (t) => {
  const nodes = await twoNodes(t);
  const { a, b, domid } = nodes;
  b.totalMemoryKiB = 4 * 1024;
  const { err, incoming } = await failedMove(nodes, nodes.src.fingerprint, t);
  t.is(err?.reason, "TargetOutOfMemory");
  t.true(err?.sourceResumed);
  t.is((await a.info(domid))?.state, "running");
  t.is((await t.throwsAsync(incoming.result, { instanceOf: MigrationError }))?.reason, "TargetOutOfMemory");
  t.deepEqual(await b.list(), []);
});

test("nobody listening: TargetUnreachable, domain untouched; bad input is refused up front", async (t) => {
  const { a, domid, src, dst } = await twoNodes(t);
  const port = await closedPort();
  const base = {
    hv: a,
    domid,
    spec,
    endpoint: `127.0.0.1:${port}`,
    identity: src,
    targetFingerprint: dst.fingerprint,
    live: true,
  };
  const err = await t.throwsAsync(sendDomain(base), { instanceOf: MigrationError });
  t.is(err?.reason, "TargetUnreachable");
  t.true(err?.sourceResumed);
  t.is((await a.info(domid))?.state, "running");
  for (const bad of [
    { endpoint: "nohostport" },
    { targetFingerprint: "abc" },
    { domid: 999 },
    { domid: 0 },
    { timeoutMs: -1 },
  ]) {
    const e = await t.throwsAsync(
      sendDomain({ ...base, ...bad }),
      { instanceOf: MigrationError },
      JSON.stringify(bad),
    );
    t.is(e?.reason, "InvalidArgument", JSON.stringify(bad));
  }
  await t.throwsAsync(createIdentity("bad name/../x"), { instanceOf: MigrationError });
});

test("cancel before any source came: Cancelled, listener closed", async (t) => {
  const b = new MemoryHypervisorDouble();
  t.teardown(() => b.close());
  const dst = await createIdentity("target");
  const incoming = await receiveDomain({
    hv: b,
    host: "127.0.0.1",
    identity: dst,
    sourceFingerprint: async () => undefined,
    targetSpec: (s) => s,
  });
  await incoming.cancel("operator gave up");
  const err = await t.throwsAsync(incoming.result, { instanceOf: MigrationError });
  t.is(err?.reason, "Cancelled");
  t.regex(err!.message, /operator gave up/);
  await t.throwsAsync(() => connectOnce(incoming.port));
});

/** A target listening for `sourceFingerprint` and a live send to it that must fail: the error and the target. */
async function failedMove(
  nodes: Awaited<ReturnType<typeof twoNodes>>,
  sourceFingerprint: string,
  t: { throwsAsync: (p: Promise<unknown>, e: object) => Promise<unknown> },
) {
  const { a, b, domid, src, dst } = nodes;
  const incoming = await receiveDomain({
    hv: b,
    host: "127.0.0.1",
    identity: dst,
    sourceFingerprint: async () => sourceFingerprint,
    targetSpec: (s) => s,
  });
  const send = sendDomain({
    hv: a,
    domid,
    spec,
    endpoint: `127.0.0.1:${incoming.port}`,
    identity: src,
    targetFingerprint: dst.fingerprint,
    live: true,
  });
  const err = (await t.throwsAsync(send, { instanceOf: MigrationError })) as MigrationError | undefined;
  return { err, incoming };
}

function connectOnce(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve();
    });
    s.once("error", reject);
  });
}

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
