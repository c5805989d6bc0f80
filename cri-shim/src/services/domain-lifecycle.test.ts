// The domain lifecycle: what a record reads as, which transitions are allowed, and that each bumps
// the record's version.
import test from "ava";
import {
  abortOutgoing,
  beginOutgoing,
  incomingDropped,
  incomingRestored,
  incomingRunning,
  lifecycleOf,
  LifecycleError,
  migratedAway,
  TRANSITIONS,
} from "./domain-lifecycle.js";
import { containerRecord } from "../testing/records.js";
import type { ContainerStatusRecord } from "./model.js";

const base: ContainerStatusRecord = containerRecord({ state: "running", domid: 7 });
const at = new Date("2026-01-01T00:00:00Z");

test("source: running -> outgoing -> migratedAway, or back to running; versions count the writes", (t) => {
  const out = beginOutgoing(base, "m1", at);
  t.deepEqual(lifecycleOf(out), { kind: "outgoing", domid: 7, migration: "m1" });
  t.is(out.version, 1);
  const back = abortOutgoing(out);
  t.deepEqual(lifecycleOf(back), { kind: "running", domid: 7 });
  t.is(back.outgoing, undefined);
  t.is(back.version, 2);
  const away = migratedAway(out, "m1", at);
  t.deepEqual(lifecycleOf(away), { kind: "migratedAway", migration: "m1" });
  t.is(away.domid, undefined);
  t.is(away.outgoing, undefined);
});

test("a running domain cannot be marked migrated away without a send having taken it", (t) => {
  t.throws(() => migratedAway(base, "m1", at), { instanceOf: LifecycleError });
  t.throws(() => beginOutgoing({ ...base, state: "exited" }, "m1", at), { instanceOf: LifecycleError });
});

test("target: incoming -> incoming {paused copy} -> running, or the copy dropped", (t) => {
  const waiting: ContainerStatusRecord = { ...base, domid: undefined, incoming: { migration: "m1" } };
  t.deepEqual(lifecycleOf(waiting), { kind: "incoming", migration: "m1", domid: undefined });
  const held = incomingRestored(waiting, 9, { mac: "00:16:3e:00:00:01", ip: "10.0.0.5" });
  t.deepEqual(lifecycleOf(held), { kind: "incoming", migration: "m1", domid: 9 });
  t.is(held.guestNetwork?.ip, "10.0.0.5");
  const runs = incomingRunning(held, 9, { mac: "00:16:3e:00:00:01", ip: "10.0.0.5" });
  t.deepEqual(lifecycleOf(runs), { kind: "running", domid: 9 });
  t.is(runs.version, 2);
  t.deepEqual(lifecycleOf(incomingDropped(held)), { kind: "incoming", migration: "m1", domid: undefined });
  t.throws(() => incomingRestored(base, 9), { instanceOf: LifecycleError });
});

test("every kind's transitions name only known kinds, and exited is final", (t) => {
  const kinds = Object.keys(TRANSITIONS);
  for (const [from, tos] of Object.entries(TRANSITIONS))
    for (const to of tos) t.true(kinds.includes(to), `${from} -> ${to}`);
  t.deepEqual(TRANSITIONS.exited, []);
});
