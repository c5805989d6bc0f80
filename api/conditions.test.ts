import test from "ava";
import { setCondition } from "./v1alpha1/conditions.js";

const t0 = new Date("2026-01-01T00:00:00Z");
const t1 = new Date("2026-01-01T00:05:00Z");

test("setCondition keeps lastTransitionTime when status is unchanged and moves it when status changes", (t) => {
  const first = setCondition(
    undefined,
    { type: "Ready", status: "False", reason: "Creating", message: "domain building" },
    t0,
  );
  const same = setCondition(
    first,
    { type: "Ready", status: "False", reason: "Booting", message: "kernel loaded", observedGeneration: 2 },
    t1,
  );
  t.is(same[0]!.lastTransitionTime, "2026-01-01T00:00:00Z");
  t.is(same[0]!.reason, "Booting");
  t.is(same[0]!.observedGeneration, 2);
  const flipped = setCondition(same, { type: "Ready", status: "True", reason: "Running", message: "" }, t1);
  t.is(flipped[0]!.lastTransitionTime, "2026-01-01T00:05:00Z");
  t.is(flipped.length, 1);
});

test("setCondition appends new types and leaves others untouched", (t) => {
  const a = setCondition(undefined, { type: "Ready", status: "True", reason: "Running", message: "" }, t0);
  const b = setCondition(a, { type: "Paused", status: "False", reason: "Running", message: "" }, t1);
  t.deepEqual(
    b.map((c) => c.type),
    ["Ready", "Paused"],
  );
  t.is(b[0], a[0]);
  t.is(a.length, 1, "the input list is not mutated");
});
