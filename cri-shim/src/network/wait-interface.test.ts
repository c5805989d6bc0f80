// waitForInterface: resolves as soon as the interface exists, with the time left; gives up at the
// timeout with 0 (later while netback's backlog shrinks); and leaves the event loop free meanwhile
// (it is what a batch of creates waits on).
import test from "ava";
import { linkExists } from "./netlink.js";
import {
  type Backlog,
  carrierUp,
  vifsOfGoneDomains,
  waitForCarrier,
  waitForInterface,
} from "./wait-interface.js";

test("resolves once the interface exists, with the time left", async (t) => {
  let checks = 0;
  const appearsAt = performance.now() + 60;
  const left = await waitForInterface("vif9.0", 5000, () => (checks++, performance.now() >= appearsAt));
  t.true(left > 4000 && left <= 5000, `${left} ms left`);
  t.true(checks < 20, `${checks} checks in 60 ms: a growing pause, not a spin`);
});

test("gives up at the timeout with 0 left; the event loop runs meanwhile", async (t) => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const t0 = performance.now();
  const left = await waitForInterface("vif9.1", 300, () => false);
  clearInterval(timer);
  t.is(left, 0);
  t.true(performance.now() - t0 >= 299);
  t.true(ticks >= 10, `other timers ran ${ticks} times while it waited`);
});

/** A backlog whose sizes come from `sizes` (the last repeats), recording each check and extension. */
function backlog(sizes: number[], graceMs: number, maxMs: number) {
  const checks: number[] = [];
  const extended: number[] = [];
  const b: Backlog = {
    size: () => {
      const size = sizes[Math.min(checks.length, sizes.length - 1)]!;
      checks.push(size);
      return Promise.resolve(size);
    },
    graceMs,
    maxMs,
    onExtend: (size) => extended.push(size),
  };
  return { b, checks, extended };
}

test("past its timeout it waits on while netback's backlog shrinks, and gets the interface", async (t) => {
  const appearsAt = performance.now() + 250;
  const { b, extended } = backlog([9, 7, 5, 3, 1], 60, 5000);
  const left = await waitForInterface("vif9.2", 50, () => performance.now() >= appearsAt, b);
  t.true(left > 0, `${left} ms left of the last extension`);
  t.true(extended.length >= 3, `extended ${extended.length} times`);
  t.deepEqual(extended, [9, 7, 5, 3, 1].slice(0, extended.length), "each time on a smaller backlog");
});

test("a backlog that stops shrinking ends the wait one grace period later", async (t) => {
  const t0 = performance.now();
  const { b, checks, extended } = backlog([4], 80, 5000);
  t.is(await waitForInterface("vif9.3", 50, () => false, b), 0);
  const ms = performance.now() - t0;
  t.true(ms >= 129 && ms < 1000, `${Math.round(ms)} ms: the timeout and one grace period`);
  t.deepEqual(extended, [4]);
  t.deepEqual(checks, [4, 4]);
});

test("no backlog: the wait ends at its timeout", async (t) => {
  const t0 = performance.now();
  const { b, checks, extended } = backlog([0], 1000, 5000);
  t.is(await waitForInterface("vif9.4", 50, () => false, b), 0);
  t.true(performance.now() - t0 < 800);
  t.deepEqual(checks, [0]);
  t.deepEqual(extended, []);
});

test("a backlog that cannot be read extends nothing: the wait ends at its timeout, without throwing", async (t) => {
  const b: Backlog = { size: () => Promise.reject(new Error("no domain list")), graceMs: 1000, maxMs: 5000 };
  const t0 = performance.now();
  t.is(await waitForInterface("vif9.6", 50, () => false, b), 0);
  t.true(performance.now() - t0 < 800);
});

test("a backlog that shrinks for ever: the wait ends at maxMs", async (t) => {
  const t0 = performance.now();
  const { b } = backlog(
    Array.from({ length: 100 }, (_, i) => 1000 - i),
    60,
    250,
  );
  t.is(await waitForInterface("vif9.5", 50, () => false, b), 0);
  const ms = performance.now() - t0;
  t.true(ms >= 249 && ms < 1500, `${Math.round(ms)} ms`);
});

test("vifsOfGoneDomains: the vifs whose domain is not live", (t) => {
  const names = [
    "lo",
    "xenbr0",
    "vif3.0",
    "vif3.1",
    "vif7.0",
    "vif7.1",
    "vif12.0-emu",
    "vifx.0",
    "vif9.0",
    "eth0",
  ];
  t.is(vifsOfGoneDomains(new Set([3, 9]), names), 2);
  t.is(vifsOfGoneDomains(new Set([3, 7, 9]), names), 0);
  t.is(vifsOfGoneDomains(new Set(), []), 0);
  t.true(vifsOfGoneDomains(new Set()) >= 0, "reads /sys/class/net by default");
});

test("an interface that is there already: no wait", async (t) => {
  t.true((await waitForInterface("lo", 1000)) >= 990);
});

test("linkExists: sysfs, so a missing name costs a stat (if_nametoindex would run modprobe as root)", (t) => {
  t.true(linkExists("lo"));
  t.false(linkExists("sfnosuch0"));
  for (const bad of ["", ".", "..", "../lo", "a/b", "averyveryverylongname"]) t.false(linkExists(bad), bad);
  // A missing name answers without the kernel's module autoload: many checks stay quick.
  const t0 = performance.now();
  for (let i = 0; i < 200; i++) linkExists(`sfnosuch${i}`);
  t.true(performance.now() - t0 < 200, `${Math.round(performance.now() - t0)} ms for 200 checks`);
});

test("waitForCarrier: the ms waited once the carrier is up, undefined at the timeout", async (t) => {
  const upAt = performance.now() + 40;
  const waited = await waitForCarrier("vif9.0", 2000, () => performance.now() >= upAt);
  t.true(waited !== undefined && waited >= 39 && waited < 1000, `${waited} ms`);
  t.is(await waitForCarrier("vif9.1", 50, () => false), undefined);
  t.true(carrierUp("lo"), "loopback's carrier is up");
  t.false(carrierUp("nope0"));
  t.false(carrierUp("../x"));
});
