import test from "ava";
import { EventCorrelator } from "./events.js";

const vm = (name: string) => ({
  apiVersion: "v1",
  kind: "UnikernelVM",
  metadata: { name, namespace: "a", uid: name },
});

test("the same event again is a count on the one written, not a new object", (t) => {
  const c = new EventCorrelator({ now: () => 0 });
  const first = c.correlate(vm("x"), "Normal", "PodCreated", "created pod x-1");
  t.is(first.action, "create");
  if (first.action !== "create") return;
  c.written(first.key, "x.abc", 1, "t0");
  const again = c.correlate(vm("x"), "Normal", "PodCreated", "created pod x-1");
  t.like(again, { action: "patch", name: "x.abc", count: 2, firstTimestamp: "t0" });
  // Another object's event is its own.
  t.is(c.correlate(vm("y"), "Normal", "PodCreated", "created pod x-1").action, "create");
});

test("similar events on one object are combined after ten, within the window", (t) => {
  let now = 0;
  const c = new EventCorrelator({ now: () => now, burst: 100 });
  const results = Array.from({ length: 12 }, (_, i) => {
    const r = c.correlate(vm("x"), "Warning", "Restarting", `attempt ${i}`);
    if (r.action === "create") c.written(r.key, `x.${i}`, 1, "t");
    return r;
  });
  t.true(results.slice(0, 9).every((r) => r.action === "create" && !r.message.startsWith("(combined")));
  t.like(results[9], { action: "create", message: "(combined from similar events): attempt 9" });
  t.like(results[10], { action: "patch", name: "x.9", count: 2 });
  // After the window the count starts over.
  now += 11 * 60_000;
  t.like(c.correlate(vm("x"), "Warning", "Restarting", "attempt 12"), {
    action: "create",
    message: "attempt 12",
  });
});

test("an object gets 25 events at once, then one per five minutes", (t) => {
  let now = 0;
  const c = new EventCorrelator({ now: () => now });
  const actions = Array.from({ length: 30 }, (_, i) => c.correlate(vm("x"), "Normal", `R${i}`, "m").action);
  t.is(actions.filter((a) => a !== "drop").length, 25);
  t.is(c.correlate(vm("y"), "Normal", "R", "m").action, "create", "other objects are not throttled");
  now += 300_000;
  t.not(c.correlate(vm("x"), "Normal", "R99", "m").action, "drop");
  t.is(c.correlate(vm("x"), "Normal", "R100", "m").action, "drop");
});
