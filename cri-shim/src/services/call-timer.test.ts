import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import { CallTimer } from "./call-timer.js";

test("each mark is the time since the previous one; ms is the whole call", async (t) => {
  const timer = new CallTimer();
  await sleep(30);
  timer.mark("lockWait");
  timer.mark("image");
  await sleep(20);
  timer.mark("domain");
  const f = timer.fields();
  t.deepEqual(Object.keys(f), ["ms", "lockWaitMs", "imageMs", "domainMs"]);
  t.true(f.lockWaitMs! >= 25, `lockWaitMs ${f.lockWaitMs}`);
  t.true(f.imageMs! < 20, `imageMs ${f.imageMs}`);
  t.true(f.domainMs! >= 15, `domainMs ${f.domainMs}`);
  t.true(f.ms! >= f.lockWaitMs! + f.imageMs! + f.domainMs! - 2);
});
