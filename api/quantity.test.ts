import test from "ava";
import { parseQuantity } from "./quantity.js";

const cases: [string | number, number | undefined][] = [
  ["1000", 1000],
  ["1k", 1000], // how the apiserver stores "1000"
  ["2Gi", 2 * 2 ** 30],
  ["64Mi", 64 * 2 ** 20],
  ["1e3", 1000],
  ["1.5k", 1500],
  ["500m", 0.5],
  [1048576, 1048576],
  ["", undefined],
  ["1kb", undefined],
  ["ten", undefined],
  [Number.NaN, undefined],
];
for (const [q, want] of cases)
  test(`parseQuantity(${JSON.stringify(q)}) is ${String(want)}`, (t) => {
    t.is(parseQuantity(q), want);
  });
