import test from "ava";
import { TerminalError, WorkQueue } from "./queue.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("duplicate keys added while queued merge into one reconcile", async (t) => {
  const seen: string[] = [];
  const q = new WorkQueue(async (k) => void seen.push(k), { name: "t", workers: 1 });
  // The first key starts at once; the others wait behind it and merge.
  q.add("ns/blocker");
  q.add("ns/a");
  q.add("ns/a");
  q.add("ns/b");
  q.add("ns/a");
  await q.idle();
  t.deepEqual(seen, ["ns/blocker", "ns/a", "ns/b"]);
});

test("one key is never reconciled twice at the same time, and a change during a reconcile runs again after it", async (t) => {
  let concurrent = 0;
  let maxConcurrent = 0;
  let runs = 0;
  const q = new WorkQueue(
    async () => {
      concurrent++;
      runs++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await sleep(20);
      concurrent--;
    },
    { name: "t", workers: 8 },
  );
  q.add("ns/x");
  await sleep(5);
  q.add("ns/x"); // arrives mid-reconcile: marked dirty
  q.add("ns/x"); // merges with the dirty mark
  await q.idle();
  t.is(maxConcurrent, 1);
  t.is(runs, 2);
});

test("different keys run in parallel up to the worker count", async (t) => {
  let concurrent = 0;
  let maxConcurrent = 0;
  const q = new WorkQueue(
    async () => {
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await sleep(20);
      concurrent--;
    },
    { name: "t", workers: 3 },
  );
  for (let i = 0; i < 10; i++) q.add(`ns/k${i}`);
  await q.idle();
  t.is(maxConcurrent, 3);
});

test("failures retry with exponential backoff until success, then the backoff resets", async (t) => {
  const times: number[] = [];
  const q = new WorkQueue(
    async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error("transient");
    },
    { name: "t", baseDelayMs: 20, maxDelayMs: 1000 },
  );
  q.add("ns/x");
  await q.idle();
  t.is(times.length, 4);
  const gaps = times.slice(1).map((x, i) => x - times[i]!);
  // 20, 40, 80 ms scheduled: a timer never fires early (1 ms of clock slack); late is fine on a busy machine.
  t.true(gaps[0]! >= 19 && gaps[1]! >= 39 && gaps[2]! >= 79, `gaps ${gaps.join(",")}`);
  t.is(q.backoffFor("ns/x"), 20);
});

test("the backoff doubles per consecutive failure and is capped", async (t) => {
  const delays: number[] = [];
  const q = new WorkQueue(
    async (k) => {
      delays.push(q.backoffFor(k));
      if (delays.length < 6) throw new Error("x");
    },
    { name: "t", baseDelayMs: 1, maxDelayMs: 4 },
  );
  q.add("k");
  await q.idle();
  t.deepEqual(delays, [1, 2, 4, 4, 4, 4]);
  t.is(q.backoffFor("k"), 1);
});

test("a TerminalError is not retried, and a later change reconciles again", async (t) => {
  let runs = 0;
  const q = new WorkQueue(
    async () => {
      runs++;
      throw new TerminalError("bad spec");
    },
    { name: "t", baseDelayMs: 1 },
  );
  q.add("ns/x");
  await q.idle();
  await sleep(30);
  t.is(runs, 1);
  q.add("ns/x");
  await q.idle();
  t.is(runs, 2);
});

test("requeueAfter brings the key back after the delay", async (t) => {
  let runs = 0;
  const q = new WorkQueue(
    async () => {
      runs++;
      return runs === 1 ? { requeueAfterMs: 30 } : undefined;
    },
    { name: "t" },
  );
  q.add("ns/x");
  await q.idle();
  t.is(runs, 2);
});

test("shutdown waits for the reconcile in flight and drops the rest", async (t) => {
  const done: string[] = [];
  const q = new WorkQueue(
    async (k) => {
      await sleep(30);
      done.push(k);
    },
    { name: "t", workers: 1 },
  );
  q.add("a");
  q.add("b");
  q.add("c");
  await sleep(5);
  await q.shutdown();
  t.deepEqual(done, ["a"]);
  q.add("d");
  await sleep(40);
  t.deepEqual(done, ["a"]);
});

test("a failure's retry is not swallowed by a requeue pending minutes away", async (t) => {
  let runs = 0;
  const q = new WorkQueue(
    async () => {
      runs++;
      if (runs === 1) return { requeueAfterMs: 10 * 60_000 }; // a deadline far away
      if (runs === 2) throw new Error("transient");
      return undefined;
    },
    { name: "t", workers: 1, baseDelayMs: 5 },
  );
  q.add("ns/a");
  await sleep(50);
  q.add("ns/a"); // a change: this run fails
  await sleep(200);
  t.is(runs, 3, "retried after the failure's short backoff, not after the 10-minute requeue");
  await q.shutdown();
});

test("high keys run before low keys queued earlier; a low key added again as high moves up, and runs once", async (t) => {
  const seen: string[] = [];
  const q = new WorkQueue(async (k) => void seen.push(k), { name: "t", workers: 1 });
  q.add("blocker"); // starts at once; the rest wait behind it
  q.add("low1", "low");
  q.add("low2", "low");
  q.add("high1");
  q.add("low2"); // now high: it goes before low1
  q.add("high1", "low"); // a lower add never demotes
  await q.idle();
  t.deepEqual(seen, ["blocker", "high1", "low2", "low1"]);
});

test("while high work is recent only lowWorkersWhileBusy low keys run at once; when it stops, all workers take them", async (t) => {
  let lowNow = 0;
  const lowPeaks: { busy: number; quiet: number } = { busy: 0, quiet: 0 };
  let phase: "busy" | "quiet" = "busy";
  const q = new WorkQueue(
    async (k) => {
      if (!k.startsWith("low")) return void (await sleep(5));
      lowNow++;
      lowPeaks[phase] = Math.max(lowPeaks[phase], lowNow);
      await sleep(15);
      lowNow--;
    },
    { name: "t", workers: 8, lowWorkersWhileBusy: 2, busyHoldMs: 40 },
  );
  q.add("high-first");
  for (let i = 0; i < 30; i++) q.add(`low${i}`, "low");
  // A stream of high keys for ~100 ms: the low lane trickles through two at a time meanwhile.
  for (let i = 0; i < 20; i++) {
    q.add(`high${i}`);
    await sleep(5);
  }
  t.is(lowPeaks.busy, 2);
  t.true(q.depth > 0, "low keys still wait while the high stream lasts");
  await sleep(60); // longer than busyHoldMs: the queue is quiet
  phase = "quiet";
  for (let i = 30; i < 60; i++) q.add(`low${i}`, "low");
  await q.idle();
  t.true(lowPeaks.quiet > 2, `quiet peak ${lowPeaks.quiet}`);
});

test("a reconcile can requeue its key at low priority", async (t) => {
  const seen: string[] = [];
  let first = true;
  const q = new WorkQueue(
    async (k) => {
      seen.push(k);
      if (k === "a" && first) {
        first = false;
        return { requeueAfterMs: 0, priority: "low" as const };
      }
      return undefined;
    },
    { name: "t", workers: 1 },
  );
  q.add("a");
  q.add("b");
  await q.idle();
  t.deepEqual(seen, ["a", "b", "a"], "the requeued key waits behind the high one");
});

test("while busy, a low key waits lowDelayWhileBusyMs, then trickles through: nothing waits for ever", async (t) => {
  const t0 = performance.now();
  const lowStarts: number[] = [];
  const q = new WorkQueue(
    async (k) => {
      if (k.startsWith("low")) lowStarts.push(performance.now() - t0);
      await sleep(2);
    },
    { name: "t", workers: 4, lowWorkersWhileBusy: 1, lowDelayWhileBusyMs: 60, busyHoldMs: 1000 },
  );
  q.add("high0");
  q.add("low0", "low");
  q.add("low1", "low");
  for (let i = 1; i < 25; i++) {
    q.add(`high${i}`);
    await sleep(10);
  }
  t.is(lowStarts.length, 2, "both low keys ran while the high work went on");
  t.true(lowStarts[0]! >= 59, `the first low key started at ${lowStarts[0]} ms, before its delay`);
  await q.shutdown();
});

test("low keys held while high work ran go when the busy spell ends, not after lowDelayWhileBusyMs", async (t) => {
  const t0 = performance.now();
  const lowStarts: number[] = [];
  const q = new WorkQueue(
    async (k) => {
      if (k.startsWith("low")) lowStarts.push(performance.now() - t0);
      await sleep(k === "high" ? 100 : 1);
    },
    { name: "t", workers: 4, lowWorkersWhileBusy: 1, lowDelayWhileBusyMs: 5000, busyHoldMs: 50 },
  );
  q.add("high");
  await sleep(5); // the high key runs: the low keys below are held (a timer for their 5 s delay)
  for (let i = 0; i < 3; i++) q.add(`low${i}`, "low");
  await q.idle();
  t.is(lowStarts.length, 3);
  // The high reconcile ends at ~100 ms and the spell 50 ms later: the held keys go then.
  t.true(Math.max(...lowStarts) < 1000, `low keys started at ${lowStarts.map(Math.round).join(", ")} ms`);
  await q.shutdown();
});
