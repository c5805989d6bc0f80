// Pause, resume, suspend to disk and resume again, as a user does it: `kubectl superfluid ...` and
// `kubectl get/logs` only, against a cluster whose node runs a real kubelet and the shim with its node
// agent (the chart's node-agent identity, not admin). The side doors are `xl list` in dom0 (is the
// domain really gone while suspended?) and nothing else. The counter of the hello unikernel, read
// through `kubectl logs`, proves that a pause stops the guest and a resume continues it, not a reboot.
import test from "ava";
import { join } from "node:path";
import { LABELS } from "../../api/annotations.js";
import type { UnikernelVM } from "../../api/index.js";
import { REPO_ROOT } from "../../lib/paths.js";
import { NODE_AGENT_USER } from "../cluster/chart-objects.js";
import { eventually, guestDomains, logTiming, type Scenario, useE2ECluster } from "./helpers.js";

const scenario = useE2ECluster(test, "life");
const TEST_TIMEOUT_MS = 25 * 60_000;

const condition = (vm: UnikernelVM, type: string) => vm.status?.conditions?.find((c) => c.type === type);

async function getVm(s: Scenario): Promise<UnikernelVM> {
  return JSON.parse(await s.ok(["get", "uvm", "hello", "-o", "json"])) as UnikernelVM;
}

/** Polls the VM until `want` holds; returns the milliseconds since `since`. */
async function untilVm(
  s: Scenario,
  what: string,
  want: (vm: UnikernelVM) => boolean,
  since: number,
): Promise<number> {
  await eventually(
    `uvm/hello: ${what}`,
    async () => (want(await getVm(s)) ? true : undefined),
    300_000,
    500,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\nstatus: ${JSON.stringify((await getVm(s)).status)}`);
  });
  return Date.now() - since;
}

interface Console {
  ticks: number[];
  readyLines: number;
}

/** hello's console through kubectl logs: its `hello: tick N` counter and how often it booted. */
async function readConsole(s: Scenario): Promise<Console> {
  const text = await s.ok(["logs", "-l", `${LABELS.vm}=hello`, "--tail=-1"]);
  const ticks = [...text.matchAll(/^hello: tick (\d+)$/gm)].map((m) => Number(m[1]));
  return { ticks, readyLines: (text.match(/^hello: ready in /gm) ?? []).length };
}
const lastTick = (c: Console) => c.ticks.at(-1) ?? 0;

/** Waits until kubectl logs shows a tick above `above`; returns the console and the ms since `since`. */
async function tickAbove(s: Scenario, above: number, since: number): Promise<{ c: Console; ms: number }> {
  const c = await eventually(
    `a tick above ${above} in kubectl logs`,
    async () => {
      const now = await readConsole(s);
      return lastTick(now) > above ? now : undefined;
    },
    180_000,
    500,
  );
  return { c, ms: Date.now() - since };
}

async function podPhase(s: Scenario): Promise<{ phase: string; restarts: number }> {
  const pod = JSON.parse(await s.ok(["get", "pods", "-l", `${LABELS.vm}=hello`, "-o", "json"])) as {
    items: Array<{ status: { phase?: string; containerStatuses?: Array<{ restartCount: number }> } }>;
  };
  if (pod.items.length !== 1) throw new Error(`expected one pod of hello, found ${pod.items.length}`);
  const st = pod.items[0]!.status;
  return { phase: st.phase ?? "", restarts: st.containerStatuses?.[0]?.restartCount ?? -1 };
}

test.serial("the node agent acts with the chart's node-agent role, not as admin", async (t) => {
  const s = await scenario(t, 5 * 60_000);
  const can = async (verb: string, resource: string, ...more: string[]) =>
    (
      await s.cluster.kubectl([
        "auth",
        "can-i",
        verb,
        resource,
        ...more,
        "--as",
        NODE_AGENT_USER,
        "-n",
        s.namespace,
      ])
    ).stdout.trim();
  t.is(await can("patch", "unikernelvms.superfluid.dev", "--subresource=status"), "yes");
  t.is(await can("patch", "unikernelvms.superfluid.dev"), "no", "the spec is the user's");
  t.is(await can("watch", "unikernelvms.superfluid.dev"), "yes");
  t.is(await can("patch", "pods"), "no", "the agent writes the domain's state on the VM, no pod");
  t.is(await can("delete", "pods"), "no");
  t.is(await can("create", "unikernelvms.superfluid.dev"), "no");
  t.is(await can("get", "secrets"), "no");
});

test.serial(
  "pause stops the counter, resume continues it; suspend frees the domain, resume continues the counter",
  async (t) => {
    const s = await scenario(t, TEST_TIMEOUT_MS);
    const node = s.cluster.nodes[0]!;
    const applied = Date.now();
    await s.ok(["apply", "-f", join(REPO_ROOT, "examples", "hello.yaml")]);
    await s.ok(["wait", "--for=condition=Ready", "uvm/hello", "--timeout=600s"]);
    logTiming(t, "kubectl apply -> Ready", Date.now() - applied);
    const running = await tickAbove(s, 2, Date.now());

    // Pause: the domain stays in memory, its vCPUs stop, the counter with them.
    let at = Date.now();
    t.log((await s.superfluid(["pause", "hello"])).trim());
    logTiming(
      t,
      "kubectl superfluid pause -> Paused=True",
      await untilVm(s, "Paused=True", (vm) => condition(vm, "Paused")?.status === "True", at),
    );
    // The third state flag is the pause; the first two say what the vCPUs were doing when it
    // came (running, or blocked waiting for the guest's next tick): `--p---` or `-bp---`.
    const xlPaused = await node.xen.exec("xl list");
    t.regex(
      xlPaused.stdout,
      /^sf-\S+\s+\d+\s+\d+\s+\d+\s+[r-][b-]p---/m,
      `xl list shows the domain paused:\n${xlPaused.stdout}`,
    );
    // Lines already in xenconsoled's buffer may still arrive: settle, then watch for a while.
    await new Promise((r) => setTimeout(r, 3000));
    const pausedAt = lastTick(await readConsole(s));
    t.true(pausedAt >= lastTick(running.c), `the counter went on to ${pausedAt} before the pause`);
    await new Promise((r) => setTimeout(r, 8000));
    t.is(lastTick(await readConsole(s)), pausedAt, "no tick while paused (8 s)");

    at = Date.now();
    t.log((await s.superfluid(["resume", "hello"])).trim());
    const resumed = await tickAbove(s, pausedAt, at);
    logTiming(t, "kubectl superfluid resume -> next tick in kubectl logs", resumed.ms);
    await untilVm(s, "Paused=False", (vm) => condition(vm, "Paused")?.status !== "True", at);

    // Suspend: saved to disk and destroyed; the pod (and its container, from the kubelet's view) stays.
    at = Date.now();
    t.log((await s.superfluid(["suspend", "hello"])).trim());
    logTiming(
      t,
      "kubectl superfluid suspend -> Suspended=True",
      await untilVm(s, "Suspended=True", (vm) => condition(vm, "Suspended")?.status === "True", at),
    );
    t.deepEqual(await guestDomains(s), [], "xl list: no guest domain while suspended");
    const suspendedAt = lastTick(await readConsole(s));
    t.deepEqual(
      await podPhase(s),
      { phase: "Running", restarts: 0 },
      "the pod stays Running while its VM is on disk",
    );
    t.log(await s.superfluid(["status", "hello"]));
    await new Promise((r) => setTimeout(r, 5000));
    t.deepEqual(await guestDomains(s), [], "still no domain 5 s later");
    t.deepEqual(await podPhase(s), { phase: "Running", restarts: 0 });

    at = Date.now();
    t.log((await s.superfluid(["resume", "hello"])).trim());
    const restored = await tickAbove(s, suspendedAt, at);
    logTiming(t, "kubectl superfluid resume (from disk) -> next tick in kubectl logs", restored.ms);
    await untilVm(s, "Suspended=False", (vm) => condition(vm, "Suspended")?.status !== "True", at);
    t.is((await guestDomains(s)).length, 1, "the domain is back");

    // Continued, not rebooted: one boot in the whole log, and every tick is the previous one plus one.
    const all = (await tickAbove(s, lastTick(restored.c), Date.now())).c;
    t.is(all.readyLines, 1, "one 'hello: ready' line: the guest never rebooted");
    const firstAfter = all.ticks.find((n) => n > suspendedAt);
    t.is(firstAfter, suspendedAt + 1, `the counter continued from ${suspendedAt}`);
    const gaps = all.ticks.flatMap((n, i) =>
      i > 0 && n !== all.ticks[i - 1]! + 1 ? [`${all.ticks[i - 1]} -> ${n}`] : [],
    );
    t.deepEqual(gaps, [], "ticks are consecutive across pause and suspend");
    t.log(`ticks ${all.ticks[0]}..${lastTick(all)}: paused at ${pausedAt}, suspended at ${suspendedAt}`);
    t.deepEqual(await podPhase(s), { phase: "Running", restarts: 0 });

    await s.ok(["delete", "uvm", "hello", "--wait=true", "--timeout=300s"]);
    await eventually(
      "xl list back to Domain-0 alone",
      async () => ((await guestDomains(s)).length === 0 ? true : undefined),
      300_000,
    );
  },
);
