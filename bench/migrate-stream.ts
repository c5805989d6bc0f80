// The migration half of `npm run bench:migrate`: the same hello domain moved from node A to node B,
// ours (cri-shim/src/migration: libxl's stream over pinned mutual TLS, restored paused, switched
// over) against the stop-and-copy baseline with the xl CLI (`xl save` to a file on A, the file copied
// to B over TCP with socat, `xl restore` on B), interleaved, medians of N rounds.
// Downtime is read the same way for both, from the guest itself: hello prints "suspending at tick N"
// when it stops on A and "resumed at tick N" when it runs on B; both console lines are timestamped
// in their dom0 and B's clock is mapped onto A's (measured offset). Live pre-copy is impossible on
// this Xen (no log-dirty for PV guests: Debian builds it without shadow paging), so ours is
// stop-and-copy too; the difference is the transport and the paused restore + switch-over.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startXenNode } from "../e2e/xen-node/index.js";
import {
  type Dom0,
  HELLO_KERNEL,
  background,
  clockOffset,
  createHello,
  makeIdentity,
  readLines,
  sendFrom,
  sh,
  startReceiver,
  waitFor,
  watchConsole,
} from "../e2e/harness/migration-bed.js";
import { median } from "./stats.js";

export interface MigrationBenchResult {
  backend: string;
  what: string;
  memoryMiB: number;
  rounds: number;
  clock: { offsetMs: number; uncertaintyMs: number };
  ours: {
    downtimeMs: number[];
    totalMs: number[];
    sourceMeasuredDowntimeMs: number[];
    bytes: number[];
    /** Whether live pre-copy ran (false: the stop-and-copy restart, on a Xen without log-dirty). */
    liveUsed: boolean[];
    /** per round: the source's timeline (ms from suspended) and save phases, the target's
     *  timeline (ms from the stream's end) and restore phases (lean backend) */
    phases: Record<string, unknown>[];
  };
  xl: { downtimeMs: number[]; totalMs: number[]; bytes: number[] };
  median: { oursDowntimeMs: number; oursTotalMs: number; xlDowntimeMs: number; xlTotalMs: number };
  ratio: { downtimeOursOverXl: number; totalOursOverXl: number };
}

/** ms between hello's "suspending" line on A and its "resumed" line on B, on A's clock. */
async function guestDowntime(
  a: Dom0,
  b: Dom0,
  name: string,
  run: () => Promise<void>,
  offsetMs: number,
): Promise<number> {
  const [onA, onB] = await Promise.all([watchConsole(a, name), watchConsole(b, name)]);
  try {
    await waitFor(`${name} ticking`, () => (onA.ticks().length >= 2 ? true : undefined), 900_000, 500);
    await run();
    const at = (w: typeof onA, re: RegExp) =>
      waitFor(`${name}: ${re}`, () => (w.lines().some((l) => re.test(l)) ? w : undefined), 600_000, 500);
    await Promise.all([at(onA, /suspending at tick/), at(onB, /resumed at tick/)]);
    const stamp = (file: Awaited<ReturnType<typeof watchConsole>>, re: RegExp) =>
      file.linesWithTime().find((l) => re.test(l.line))!.at;
    return stamp(onB, /resumed at tick/) - offsetMs - stamp(onA, /suspending at tick/);
  } finally {
    await Promise.all([onA.stop(), onB.stop()]);
  }
}

export async function benchMigrationStream(
  rounds: number,
  memoryMiB = 16,
  backend = "libxl",
): Promise<MigrationBenchResult> {
  const [a, b] = await Promise.all([
    startXenNode({ name: "bench-mig-a" }),
    startXenNode({ name: "bench-mig-b" }),
  ]);
  try {
    const src = await makeIdentity(a, "source");
    const clock = await clockOffset(a, b);
    const ours = {
      downtimeMs: [] as number[],
      totalMs: [] as number[],
      sourceMeasuredDowntimeMs: [] as number[],
      bytes: [] as number[],
      liveUsed: [] as boolean[],
      phases: [] as Record<string, unknown>[],
    };
    const xl = { downtimeMs: [] as number[], totalMs: [] as number[], bytes: [] as number[] };

    const viaOurs = async (i: number) => {
      const name = `sf-bench-${i}`;
      const d = await createHello(a, name, memoryMiB);
      let total = 0;
      const downtime = await guestDowntime(
        a,
        b,
        name,
        async () => {
          const rx = await startReceiver(b, `rx-${i}`, src.fingerprint);
          const s = await sendFrom(a, {
            identityFile: src.file,
            specFile: d.specFile,
            domid: d.domid,
            endpoint: rx.endpoint,
            targetFingerprint: rx.fingerprint,
            // What the node agent asks for by default; on this Xen it restarts stop-and-copy.
            live: true,
          });
          if (!s.ok) throw new Error(`migration failed: ${JSON.stringify(s.error)}`);
          const got = await rx.outcome();
          ours.phases.push({ source: s.timeline, save: s.phases, target: got.timeline, restore: got.phases });
          total = s.totalMs!;
          ours.liveUsed.push(s.live === true);
          ours.sourceMeasuredDowntimeMs.push(s.downtimeMs!);
          ours.bytes.push(s.bytes!);
        },
        clock.offsetMs,
      );
      ours.downtimeMs.push(Math.round(downtime));
      ours.totalMs.push(total);
      await sh(b, `xl destroy ${name}`);
    };

    const viaXl = async (i: number) => {
      const name = `xl-bench-${i}`;
      const port = 47100 + i;
      await sh(
        a,
        `printf 'name="${name}"\\ntype="pv"\\nkernel="${HELLO_KERNEL}"\\nmemory=${memoryMiB}\\ncmdline="interval=1"\\n' > /tmp/${name}.cfg && xl create /tmp/${name}.cfg >/dev/null`,
        300_000,
      );
      // B: take the file from the segment, restore it (xl restore unpauses), print B's clock (ms).
      writeFileSync(
        join(b.hostDir, `xl-rx-${i}.sh`),
        `socat -u TCP-LISTEN:${port},bind=${b.segmentIp},reuseaddr OPEN:/tmp/${name}.ckpt,creat,trunc\nxl restore /tmp/${name}.ckpt >/dev/null 2>&1 || exit 1\necho "{\\"restoredAt\\": $(($(date +%s%N) / 1000)), \\"bytes\\": $(stat -c %s /tmp/${name}.ckpt)}"\nrm -f /tmp/${name}.ckpt\n`,
      );
      const { out } = await background(b, `xl-rx-${i}`, `sh ${b.dom0HostDir}/xl-rx-${i}.sh`);
      let startedAt = 0;
      const downtime = await guestDowntime(
        a,
        b,
        name,
        async () => {
          // A: the clock (µs) when xl save starts, then save, copy (retrying until B listens), clean up.
          startedAt =
            Number(
              await sh(
                a,
                `s=$(($(date +%s%N) / 1000)); xl save ${name} /tmp/${name}.ckpt >/dev/null 2>&1 && socat -u OPEN:/tmp/${name}.ckpt TCP:${b.segmentIp}:${port},retry=600,interval=0.05 && rm -f /tmp/${name}.ckpt /tmp/${name}.cfg && echo $s`,
                600_000,
              ),
            ) / 1000;
        },
        clock.offsetMs,
      );
      const done = await waitFor(
        "xl restore on B",
        () => readLines<{ restoredAt: number; bytes: number }>(out)[0],
        900_000,
        500,
      );
      xl.downtimeMs.push(Math.round(downtime));
      xl.totalMs.push(Math.round(done.restoredAt / 1000 - clock.offsetMs - startedAt));
      xl.bytes.push(done.bytes);
      await sh(b, `xl destroy ${name}`);
    };

    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        await viaOurs(i);
        await viaXl(i);
      } else {
        await viaXl(i);
        await viaOurs(i);
      }
      console.log(
        `migration round ${i + 1}/${rounds}: ours downtime ${ours.downtimeMs[i]} ms (source-measured ${ours.sourceMeasuredDowntimeMs[i]}), total ${ours.totalMs[i]} ms; xl downtime ${xl.downtimeMs[i]} ms, total ${xl.totalMs[i]} ms`,
      );
    }
    const m = {
      oursDowntimeMs: median(ours.downtimeMs),
      oursTotalMs: median(ours.totalMs),
      xlDowntimeMs: median(xl.downtimeMs),
      xlTotalMs: median(xl.totalMs),
    };
    return {
      backend,
      what: "hello moved from emulated node A to node B: ours (the backend's stream over pinned mutual TLS; live asked, restarted stop-and-copy because this Xen has no log-dirty for PV guests) vs xl save + socat copy + xl restore; downtime = hello's 'suspending' console line on A to its 'resumed' line on B (B's clock mapped to A's); total = ours: sendDomain start to target running, xl: xl save start to xl restore done",
      memoryMiB,
      rounds,
      clock,
      ours,
      xl,
      median: m,
      ratio: {
        downtimeOursOverXl: Number((m.oursDowntimeMs / m.xlDowntimeMs).toFixed(3)),
        totalOursOverXl: Number((m.oursTotalMs / m.xlTotalMs).toFixed(3)),
      },
    };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}
