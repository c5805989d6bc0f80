import test from "ava";
import { median } from "./stats.js";

test("median: the middle value, the mean of the two middle ones, NaN for none", (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.is(median([7]), 7);
  t.true(Number.isNaN(median([])));
  // The input is left as it was.
  const xs = [3, 1, 2];
  median(xs);
  t.deepEqual(xs, [3, 1, 2]);
});
