// The image-defaults cache over a reader we control (the registry side is tested for real in
// e2e/cluster/image-memory.test.ts).
import test from "ava";
import { ImageDefaults, type ReadImage } from "./image-defaults.js";

function reader(answers: Record<string, number | undefined | Error | "hang">) {
  const calls: string[] = [];
  const read: ReadImage = (ref) => {
    calls.push(ref);
    const a = answers[ref];
    if (a === "hang") return new Promise(() => undefined);
    if (a instanceof Error) return Promise.reject(a);
    return Promise.resolve(a === undefined ? {} : { memoryMiB: a });
  };
  return { calls, read };
}

test("a read image's default is cached until its time is up; concurrent lookups share one read", async (t) => {
  let now = 0;
  const r = reader({ a: 4, b: undefined });
  const d = new ImageDefaults(r.read, { ttlMs: 1000, now: () => now });
  const [x, y] = await Promise.all([d.lookup("a"), d.lookup("a")]);
  t.deepEqual(x, { state: "read", memoryMiB: 4 });
  t.deepEqual(y, x);
  t.deepEqual(await d.lookup("b"), { state: "read" });
  t.deepEqual(r.calls, ["a", "b"]);
  now = 999;
  await d.lookup("a");
  t.deepEqual(r.calls, ["a", "b"]);
  now = 1000;
  await d.lookup("a");
  t.deepEqual(r.calls, ["a", "b", "a"], "expired: read again");
});

test("a failure is reported with its reason and asked again only after failureTtlMs", async (t) => {
  let now = 0;
  const r = reader({ bad: new Error("connect ECONNREFUSED 127.0.0.1:5000") });
  const d = new ImageDefaults(r.read, { failureTtlMs: 100, now: () => now });
  t.deepEqual(await d.lookup("bad"), { state: "unread", reason: "connect ECONNREFUSED 127.0.0.1:5000" });
  now = 50;
  await d.lookup("bad");
  t.is(r.calls.length, 1);
  now = 100;
  await d.lookup("bad");
  t.is(r.calls.length, 2);
});

test("a registry that does not answer makes the lookup unread after timeoutMs, not a hung reconcile", async (t) => {
  const r = reader({ slow: "hang" });
  const d = new ImageDefaults(r.read, { timeoutMs: 50 });
  const t0 = Date.now();
  const got = await d.lookup("slow");
  t.is(got.state, "unread");
  t.regex(got.state === "unread" ? got.reason : "", /did not answer within 50 ms/);
  t.true(Date.now() - t0 < 2000);
  await d.lookup("slow");
  t.is(r.calls.length, 1, "the read still in flight is shared, not repeated");
});

test("the cache keeps at most maxEntries references", async (t) => {
  const r = reader({ a: 1, b: 2, c: 3 });
  const d = new ImageDefaults(r.read, { maxEntries: 2 });
  for (const ref of ["a", "b", "c", "c", "b"]) await d.lookup(ref);
  t.deepEqual(r.calls, ["a", "b", "c"]);
  await d.lookup("a");
  t.deepEqual(r.calls, ["a", "b", "c", "a"], "the oldest went first");
});
