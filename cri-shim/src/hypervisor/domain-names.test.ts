// The domain name cache: a name is read once per (domid, uuid), again after maxAgeMs, never more
// than `concurrency` reads at a time, and entries of domains that are gone are dropped.
import test from "ava";
import { DomainNameCache } from "./domain-names.js";

function reader(names: Record<number, string | undefined>) {
  const reads: number[] = [];
  let inflight = 0;
  let maxInflight = 0;
  const read = async (domid: number) => {
    reads.push(domid);
    maxInflight = Math.max(maxInflight, ++inflight);
    await new Promise((r) => setImmediate(r));
    inflight--;
    return names[domid];
  };
  return { read, reads, maxInflight: () => maxInflight };
}

const doms = (n: number, uuid = (i: number) => `u-${i}`) =>
  Array.from({ length: n }, (_, i) => ({ domid: i + 1, uuid: uuid(i + 1) }));

test("a thousand domains: each name read once, then served from the cache; reads bounded", async (t) => {
  const cache = new DomainNameCache({ maxAgeMs: 60_000, concurrency: 8 });
  const all = doms(1000);
  const r = reader(Object.fromEntries(all.map((d) => [d.domid, `vm-${d.domid}`])));
  const first = await cache.names(all, r.read);
  t.is(first[0], "vm-1");
  t.is(first[999], "vm-1000");
  t.is(r.reads.length, 1000);
  t.true(r.maxInflight() <= 8, `at most 8 reads in flight, saw ${r.maxInflight()}`);
  const again = await cache.names(all, r.read);
  t.deepEqual(again, first);
  t.is(r.reads.length, 1000, "the second list reads nothing");
});

test("a new uuid on the same domid (a shell turned VM, a reused domid) reads the name again", async (t) => {
  const cache = new DomainNameCache({ maxAgeMs: 60_000, concurrency: 4 });
  const names: Record<number, string> = { 7: "sf-shell-4-1" };
  const r = reader(names);
  t.deepEqual(await cache.names([{ domid: 7, uuid: "shell" }], r.read), ["sf-shell-4-1"]);
  names[7] = "sf-abc";
  t.deepEqual(await cache.names([{ domid: 7, uuid: "shell" }], r.read), ["sf-shell-4-1"]);
  t.deepEqual(await cache.names([{ domid: 7, uuid: "vm" }], r.read), ["sf-abc"]);
  t.deepEqual(r.reads, [7, 7]);
});

test("names are read again after maxAgeMs; unreadable names are empty and not cached", async (t) => {
  let now = 0;
  const cache = new DomainNameCache({ maxAgeMs: 1000, concurrency: 2, now: () => now });
  const r = reader({ 1: "a" });
  await cache.names([{ domid: 1, uuid: "x" }], r.read);
  now = 999;
  await cache.names([{ domid: 1, uuid: "x" }], r.read);
  t.is(r.reads.length, 1);
  now = 1001;
  await cache.names([{ domid: 1, uuid: "x" }], r.read);
  t.is(r.reads.length, 2);
  t.deepEqual(await cache.names([{ domid: 2, uuid: "y" }], r.read), [""]);
  await cache.names([{ domid: 2, uuid: "y" }], r.read);
  t.is(r.reads.filter((d) => d === 2).length, 2, "an unreadable name is not cached");
});

test("retain drops the domains that are gone; forget drops one", async (t) => {
  const cache = new DomainNameCache({ maxAgeMs: 60_000, concurrency: 2 });
  const r = reader({ 1: "a", 2: "b", 3: "c" });
  await cache.names(doms(3), r.read);
  t.is(cache.size, 3);
  cache.retain([1, 3]);
  t.is(cache.size, 2);
  t.is(cache.get(2, "u-2"), undefined);
  cache.forget(1);
  t.is(cache.get(1, "u-1"), undefined);
  t.is(cache.get(3, "u-3"), "c");
});
