// The node agent where it runs: the real shim (libxl driver, CRI stores) in dom0 of an emulated Xen
// node, a real apiserver on the host, and hello started through crictl as the kubelet would. The
// runPolicy is flipped on the UnikernelVM; the test checks the world: hello's console counter, xl
// list, the checkpoint file, the CRI's view and the VM's conditions, domain id and state.
import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type AgentBed,
  CHECKPOINT_DIR,
  condition,
  runVmPod,
  setRunPolicy,
  startAgentBed,
  type Tick,
  ticks,
  type VmPod,
  waitForVm,
} from "../../../e2e/harness/agent-bed.js";

const ctx = {} as { bed: AgentBed; hello: VmPod };

test.serial(
  "setup: apiserver, registry, an emulated Xen node with the shim + node agent, hello running",
  async (t) => {
    t.timeout(1_800_000);
    ctx.bed = await startAgentBed("agent");
    ctx.hello = await runVmPod(ctx.bed, "hello");
    const ticked = await waitForTicks(3);
    t.true(ticked.length >= 3, "hello ticks on its console before any test acts on it");
  },
);

test.after.always(async () => {
  await ctx.bed?.stop();
});

function ready(t: { timeout: (ms: number) => void }): void {
  t.timeout(1_200_000);
  if (!ctx.hello) throw new Error("setup failed; see the first test");
}

async function waitForTicks(atLeast: number, after = 0): Promise<Tick[]> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const all = await ticks(ctx.bed, ctx.hello.vm);
    if (all.filter((x) => x.n > after).length >= atLeast) return all;
    if (Date.now() > deadline)
      throw new Error(
        `hello ticked ${all.length} times (wanted ${atLeast} after ${after})\n${ctx.bed.shim.log(40)}`,
      );
    await sleep(500);
  }
}

/** The longest silence between two consecutive ticks from tick `from` on: what the guest lost. */
function longestGap(all: Tick[], from: number): { ms: number; after: number } {
  let worst = { ms: 0, after: from };
  for (let i = 1; i < all.length; i++)
    if (all[i - 1]!.n >= from && all[i]!.at - all[i - 1]!.at > worst.ms)
      worst = { ms: all[i]!.at - all[i - 1]!.at, after: all[i - 1]!.n };
  return worst;
}

/** Every tick is the previous + 1 from 1: the counter never reset or skipped. */
function assertContinuous(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void }, all: Tick[]): void {
  t.deepEqual(
    all.map((x) => x.n),
    all.map((_, i) => i + 1),
    "hello's counter runs 1, 2, 3... with no reset",
  );
}

async function xlDomains(): Promise<{ name: string; id: number; memMiB: number; state: string }[]> {
  const out = await ctx.bed.sh("xl list | awk 'NR>1 {print $1, $2, $3, $5}'");
  return out
    .split("\n")
    .filter((l) => l.startsWith("sf-"))
    .map((l) => {
      const [name, id, mem, state] = l.split(" ");
      return { name: name!, id: Number(id), memMiB: Number(mem), state: state! };
    });
}

async function criState(): Promise<string> {
  return (
    JSON.parse(await ctx.bed.crictl(`inspect -o json ${ctx.hello.ctr}`)) as { status: { state: string } }
  ).status.state;
}

const ckpt = () => `${CHECKPOINT_DIR}/${ctx.hello.uid}.ckpt`;
const freeMiB = async () => Number(await ctx.bed.sh("xl info | awk '/^free_memory/ {print $3}'"));

test.serial(
  "Paused: the domain is paused (memory kept), hello stops ticking; Running: it carries on from where it was",
  async (t) => {
    ready(t);
    const before = await waitForTicks(3);
    const t0 = Date.now();
    await setRunPolicy(ctx.bed, "hello", "Paused");
    const paused = await waitForVm(
      ctx.bed,
      "hello",
      "Paused=True",
      (v) => condition(v, "Paused")?.status === "True",
    );
    t.is(condition(paused, "Paused")?.observedGeneration, paused.metadata.generation);
    const [dom] = await xlDomains();
    t.truthy(dom, "the domain still exists");
    t.regex(dom!.state, /p/, "xl list shows it paused");
    // The domain's id and state, in the agent's same apply on the VM's status.
    t.like(paused.status, { domainState: "paused", domainId: dom!.id });
    const atPause = (await ticks(ctx.bed, "hello")).at(-1)!.n;
    await sleep(4000);
    t.true((await ticks(ctx.bed, "hello")).at(-1)!.n <= atPause + 1, "no ticks while paused");
    t.is(await criState(), "CONTAINER_RUNNING");

    await setRunPolicy(ctx.bed, "hello", "Running");
    const resumed = await waitForVm(
      ctx.bed,
      "hello",
      "Paused=False",
      (v) => condition(v, "Paused")?.status === "False",
    );
    const downtimeMs = Date.now() - t0;
    t.is(condition(resumed, "Paused")?.reason, "NotPaused");
    t.like(resumed.status, { domainState: "running", domainId: dom!.id });
    const all = await waitForTicks(3, atPause + 1);
    assertContinuous(t, all);
    const gap = longestGap(all, before.at(-1)!.n);
    t.log(
      `paused for ${downtimeMs} ms (patch to Running observed); longest console gap ${gap.ms} ms after tick ${gap.after}; ticks ${before.length} -> ${all.length}`,
    );
    t.true(gap.ms >= 3000, "the guest really stopped while paused");
    t.true(gap.ms <= downtimeMs + 2000, `console gap ${gap.ms} ms > downtime ${downtimeMs} ms + 2 s`);
    t.is((await xlDomains())[0]?.id, dom!.id, "the same domain, not a new one");
  },
);

test.serial(
  "Suspended: saved to a checkpoint, no domain, memory freed, the CRI still says running; Running: restored, counter continues",
  async (t) => {
    ready(t);
    const [dom] = await xlDomains();
    const freeBefore = await freeMiB();
    const lastBefore = (await waitForTicks(2)).at(-1)!.n;
    const t0 = Date.now();
    await setRunPolicy(ctx.bed, "hello", "Suspended");
    const suspended = await waitForVm(
      ctx.bed,
      "hello",
      "Suspended=True",
      (v) => condition(v, "Suspended")?.status === "True",
    );
    t.is(condition(suspended, "Suspended")?.reason, "Suspended");
    t.is(suspended.status?.domainState, "suspended");
    t.is(suspended.status?.domainId, undefined, "a saved domain has no id");
    t.deepEqual(await xlDomains(), [], "xl list: no domain while suspended");
    t.is(
      await ctx.bed.sh(`ls ${CHECKPOINT_DIR}`),
      `${ctx.hello.uid}.ckpt`,
      "the checkpoint, and no temp file",
    );
    // The pages hello wrote (and its page tables) with their data; its all-zero pages as entries
    // without data, so the file is far below the guest's 4 MiB.
    const ckptBytes = Number(await ctx.bed.sh(`stat -c %s ${ckpt()}`));
    t.true(
      ckptBytes > 32 * 1024 && ckptBytes < 4 * 1024 * 1024,
      `the checkpoint holds the guest's written memory, not its zero pages (${ckptBytes} bytes)`,
    );
    const freeAfter = await freeMiB();
    t.true(
      freeAfter >= freeBefore + dom!.memMiB - 2,
      `free memory ${freeBefore} -> ${freeAfter} MiB; the domain had ${dom!.memMiB}`,
    );
    await sleep(3000); // several exit-monitor passes
    t.is(await criState(), "CONTAINER_RUNNING", "a suspended VM is not reported exited");

    await setRunPolicy(ctx.bed, "hello", "Running");
    const resumed = await waitForVm(
      ctx.bed,
      "hello",
      "Suspended=False",
      (v) => condition(v, "Suspended")?.status === "False",
    );
    const downtimeMs = Date.now() - t0;
    t.is(condition(resumed, "Suspended")?.reason, "NotSuspended");
    t.is(
      await ctx.bed.sh(`ls ${CHECKPOINT_DIR} | wc -l`),
      "0",
      "the checkpoint is deleted after the restore",
    );
    const [restored] = await xlDomains();
    t.is(restored?.name, dom!.name, "restored under the same name");
    t.not(restored?.id, dom!.id, "a new domain id");
    t.like(resumed.status, { domainState: "running", domainId: restored!.id }, "the VM's status names it");
    const info = JSON.parse(await ctx.bed.crictl(`inspect -o json ${ctx.hello.ctr}`)) as {
      status: { state: string };
      info?: { info?: string };
    };
    t.is(info.status.state, "CONTAINER_RUNNING");
    if (info.info?.info)
      t.is(
        (JSON.parse(info.info.info) as { domid: number }).domid,
        restored!.id,
        "the store records the new domid",
      );
    const all = await waitForTicks(3, lastBefore + 1);
    assertContinuous(t, all);
    const gap = longestGap(all, lastBefore);
    t.log(
      `suspended+resumed in ${downtimeMs} ms (patch to Running observed); longest console gap ${gap.ms} ms, after tick ${gap.after}`,
    );
    t.true(gap.ms >= 3000, "the guest really was gone while suspended");
    t.true(gap.ms <= downtimeMs + 2000, `console gap ${gap.ms} ms > downtime ${downtimeMs} ms + 2 s`);
    t.regex(
      await ctx.bed.sh(`cat /var/log/pods/hello/main/0.log`),
      /hello: resumed at tick \d+ \(restored domain\)/,
    );
  },
);

test.serial(
  "Paused -> Suspended -> Paused -> Running: a paused domain is saved too, restored paused, then runs on",
  async (t) => {
    ready(t);
    const lastBefore = (await waitForTicks(1)).at(-1)!.n;
    await setRunPolicy(ctx.bed, "hello", "Paused");
    await waitForVm(ctx.bed, "hello", "Paused=True", (v) => condition(v, "Paused")?.status === "True");
    await setRunPolicy(ctx.bed, "hello", "Suspended");
    await waitForVm(
      ctx.bed,
      "hello",
      "Suspended=True",
      (v) => condition(v, "Suspended")?.reason === "Suspended" && condition(v, "Paused")?.status === "False",
    );
    t.deepEqual(await xlDomains(), [], "saved although it was paused");
    await setRunPolicy(ctx.bed, "hello", "Paused");
    const back = await waitForVm(
      ctx.bed,
      "hello",
      "restored paused",
      (v) => condition(v, "Suspended")?.status === "False" && condition(v, "Paused")?.status === "True",
    );
    t.is(
      back.status?.phase,
      "Running",
      "the phase is the operator's (none runs here): the agent never writes it",
    );
    const [dom] = await xlDomains();
    t.regex(dom?.state ?? "", /p/, "restored, left paused");
    t.is(await ctx.bed.sh(`ls ${CHECKPOINT_DIR} | wc -l`), "0");
    await setRunPolicy(ctx.bed, "hello", "Running");
    await waitForVm(
      ctx.bed,
      "hello",
      "Running",
      (v) => condition(v, "Paused")?.status === "False" && condition(v, "Suspended")?.status === "False",
    );
    assertContinuous(t, await waitForTicks(2, lastBefore + 1));
  },
);

test.serial(
  "bad input: a corrupt checkpoint fails the restore with reason RestoreFailed and leaks nothing",
  async (t) => {
    ready(t);
    await setRunPolicy(ctx.bed, "hello", "Suspended");
    await waitForVm(
      ctx.bed,
      "hello",
      "Suspended=True",
      (v) => condition(v, "Suspended")?.reason === "Suspended",
    );
    await ctx.bed.sh(`dd if=/dev/urandom of=${ckpt()} bs=1k count=64 conv=notrunc 2>/dev/null`);
    await setRunPolicy(ctx.bed, "hello", "Running");
    const failed = await waitForVm(
      ctx.bed,
      "hello",
      "Suspended reason RestoreFailed",
      (v) => condition(v, "Suspended")?.reason === "RestoreFailed",
    );
    const c = condition(failed, "Suspended")!;
    t.log(`${c.reason}: ${c.message}`);
    t.is(c.status, "True", "still suspended: the checkpoint is kept, not thrown away");
    t.regex(c.message, /^restore failed: checkpoint \S+ is corrupt: sha256/);
    t.deepEqual(await xlDomains(), [], "no half-built domain left");
    t.is(await ctx.bed.sh(`ls ${CHECKPOINT_DIR}`), `${ctx.hello.uid}.ckpt`, "no temp file left");
    await sleep(6000); // a resync pass: the failure is not retried in a loop
    t.deepEqual(await xlDomains(), []);
    t.is(await criState(), "CONTAINER_RUNNING");

    // The kubelet's way out: remove the pod. Its checkpoint goes with it.
    await ctx.bed.crictl(`rmp -f ${ctx.hello.pod}`);
    t.is(await ctx.bed.sh(`ls ${CHECKPOINT_DIR} | wc -l`), "0", "no checkpoint left");
    t.deepEqual(await xlDomains(), []);
    t.is(await ctx.bed.crictl("pods -q"), "");
  },
);
