// waitForInterface: resolves as soon as the interface exists, with the time left; gives up at the
// timeout with 0; and leaves the event loop free meanwhile (it is what a batch of creates waits on).
import test from "ava";
import { linkExists } from "./netlink.js";
import { carrierUp, waitForCarrier, waitForInterface } from "./wait-interface.js";

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
