// Which bridge of the chain an address's guest joins, and the names of an overflow bridge's parts.
import test from "ava";
import {
  GUESTS_PER_BRIDGE,
  MAX_OVERFLOW_BRIDGES,
  addressOrdinal,
  bridgeSlot,
  overflowLink,
} from "./bridge-ports.js";

test("an address's ordinal picks its bridge: the first 1,000 on the pod bridge, then 1,000 per overflow bridge", (t) => {
  const table: [ordinal: number, slot: number][] = [
    [0, 0],
    [999, 0],
    [1000, 1],
    [1999, 1],
    [2000, 2],
    [2045, 2], // a /21's last host address
    [MAX_OVERFLOW_BRIDGES * GUESTS_PER_BRIDGE + 999, MAX_OVERFLOW_BRIDGES],
  ];
  for (const [ordinal, slot] of table) t.is(bridgeSlot(ordinal), slot, `ordinal ${ordinal}`);
  t.is(bridgeSlot(5, 2), 2, "a smaller figure per bridge");
});

test("no bridge past the last overflow bridge, nor for a bad ordinal or figure per bridge", (t) => {
  t.throws(() => bridgeSlot((MAX_OVERFLOW_BRIDGES + 1) * GUESTS_PER_BRIDGE), {
    message: /would need overflow bridge 21; a node makes at most 20 \(21000 guests\)/,
  });
  for (const bad of [-1, 1.5, Number.NaN]) t.throws(() => bridgeSlot(bad), { message: /not a whole number/ });
  for (const bad of [0, 1001, 2.5])
    t.throws(() => bridgeSlot(1, bad), { message: /guests per bridge must be 1..1000/ });
});

test("an overflow bridge and its veth ends are named after the pod bridge, within 15 characters", (t) => {
  t.deepEqual(overflowLink("xenbr0", 1), { bridge: "xenbr0-1", uplink: "xenbr0-1u", downlink: "xenbr0-1d" });
  const long = overflowLink("a-very-long-br0", 12);
  t.deepEqual(long, { bridge: "a-very-long-12", uplink: "a-very-long-12u", downlink: "a-very-long-12d" });
  for (const name of Object.values(long)) t.true(name.length <= 15, name);
  t.throws(() => overflowLink("xenbr0", 0), { message: /out of 1..20/ });
  t.throws(() => overflowLink("xenbr0", 21), { message: /out of 1..20/ });
  t.throws(() => overflowLink("bad name", 1), { message: /not an interface name/ });
});

test("an ordinal counts every address of the ranges in order, and none outside them", (t) => {
  const spans = [
    { first: 100, last: 109 },
    { first: 500, last: 504 },
  ];
  t.is(addressOrdinal(spans, 100), 0);
  t.is(addressOrdinal(spans, 109), 9);
  t.is(addressOrdinal(spans, 500), 10);
  t.is(addressOrdinal(spans, 504), 14);
  t.is(addressOrdinal(spans, 110), undefined);
  t.is(addressOrdinal(spans, 99), undefined);
});
