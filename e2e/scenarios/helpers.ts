// What the e2e scenarios share: one cluster per test file (booted in the first test's body), kubectl
// in the file's namespace, polling the world until it looks as expected, and a failure report
// (operator/shim/kubelet logs, events, `kubectl describe`) attached to every failed test.
import type { ExecutionContext, TestFn } from "ava";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import type { CommandResult } from "../harness/control-plane.js";
import { type ClusterOptions, type E2ECluster, startCluster } from "../cluster/index.js";
import { guestDomainsFromXl, XL_LIST_VERBOSE } from "../xen-node/xl-domains.js";

/** Bring-up under TCG emulation on 2 shared cores takes minutes; ava's default 5 m is per test. */
const BRING_UP_TIMEOUT_MS = 25 * 60_000;

export interface Scenario {
  cluster: E2ECluster;
  namespace: string;
  /** kubectl in this file's namespace. */
  kubectl(args: string[], input?: string): Promise<CommandResult>;
  /** kubectl that must succeed; returns stdout. */
  ok(args: string[], input?: string): Promise<string>;
  /** `kubectl superfluid ...` (the plugin in bin/, found on PATH as a user installs it); must succeed. */
  superfluid(args: string[]): Promise<string>;
}

/**
 * One cluster per test file, booted by the first test that asks for it, inside that test's body (a
 * before hook would hide a slow boot behind ava's hook timeout and attach no diagnostics). Every test
 * starts with `const s = await scenario(t, TEST_TIMEOUT_MS)`: the bring-up gets its own time budget,
 * then the test's own budget starts. A failed bring-up fails every test of the file at once.
 */
export function useE2ECluster<C>(
  test: TestFn<C>,
  prefix: string,
  opts: ClusterOptions = {},
): (t: ExecutionContext<C>, testTimeoutMs: number) => Promise<Scenario> {
  let starting: Promise<Scenario> | undefined;
  let scenario: Scenario | undefined;
  let cluster: E2ECluster | undefined;
  const bringUp = async (t: ExecutionContext<C>): Promise<Scenario> => {
    cluster = await startCluster({ namePrefix: prefix, ...opts });
    const c = cluster;
    const namespace = `e2e-${prefix}-${randomBytes(3).toString("hex")}`;
    const kubectl = (args: string[], input?: string) =>
      c.kubectl(["--namespace", namespace, ...args], input === undefined ? {} : { input });
    const s: Scenario = {
      cluster: c,
      namespace,
      kubectl,
      async ok(args, input) {
        const r = await kubectl(args, input);
        if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
        return r.stdout;
      },
      async superfluid(args) {
        // kubectl finds plugins only when the plugin name comes first: the flags go after it.
        const full = ["superfluid", ...args, "--namespace", namespace, "--kubeconfig", c.kubeconfigPath];
        const r = await runAsync(k8sBinary("kubectl"), full, {
          env: { ...process.env, PATH: `${join(REPO_ROOT, "bin")}:${process.env.PATH ?? ""}` },
          timeoutMs: 120_000,
        });
        if (r.code !== 0) throw new Error(`kubectl ${full.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
        return r.stdout;
      },
    };
    await c.kubectl(["create", "namespace", namespace]);
    // The serviceaccount controller makes `default`; pods are refused until it exists.
    await eventually(
      "the default ServiceAccount",
      async () => ((await kubectl(["get", "serviceaccount", "default"])).code === 0 ? true : undefined),
      60_000,
    );
    t.log(`cluster up: ${JSON.stringify(c.timings)}`);
    scenario = s;
    return s;
  };
  test.afterEach.always(async (t) => {
    if (!t.passed && scenario) t.log(await scenario.cluster.diagnostics(scenario.namespace));
  });
  test.after.always(async () => {
    await starting?.catch(() => undefined);
    await cluster?.stop();
  });
  return async (t, testTimeoutMs) => {
    if (!starting) {
      t.timeout(BRING_UP_TIMEOUT_MS + testTimeoutMs);
      starting = bringUp(t);
    }
    const s = await starting;
    t.timeout(testTimeoutMs);
    return s;
  };
}

/** Polls `probe` until it returns a value (not undefined); throws with the last observation. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 1000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
      );
    await sleep(intervalMs);
  }
}

/** Guest domains on a node (not Domain-0, not the lean backend's shells), from `xl list -v` in its dom0. */
export async function guestDomains(scenario: Scenario, nodeIndex = 0): Promise<string[]> {
  const r = await scenario.cluster.nodes[nodeIndex]!.xen.exec(XL_LIST_VERBOSE);
  if (r.code !== 0) throw new Error(`xl list failed: ${r.stderr}`);
  return guestDomainsFromXl(r.stdout).map((d) => d.name);
}

export function logTiming(t: ExecutionContext, what: string, ms: number): void {
  t.log(`${what}: ${(ms / 1000).toFixed(1)} s`);
}

/** examples/<name>.yaml */
export const example = (name: string) => join(REPO_ROOT, "examples", `${name}.yaml`);

/** The fields of a Pod the scenarios read (`kubectl get pod -o json`). */
export interface PodView {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{
      name: string;
      ready: boolean;
      containerID?: string;
      restartCount: number;
      state: { waiting?: { reason?: string; message?: string }; running?: object };
    }>;
  };
}
