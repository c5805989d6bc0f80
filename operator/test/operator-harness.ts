// The setup the operator's integration tests share: a namespace on the real apiserver prepared as
// kube-controller-manager and an admin would have, the operator running in-process on it, the
// test's "kubelet" reaping terminating pods, and the UnikernelVM calls every file makes.
import type { TestFn } from "ava";
import { API_VERSION, UNIKERNELVM_PLURAL, type UnikernelVM, type UnikernelVMSpec } from "../../api/index.js";
import { type Cluster, useCluster } from "../../e2e/harness/ava.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { waitFor } from "../../lib/net.js";
import { type RunningOperator, startOperator } from "../src/operator.js";
import { clusterReady, deleteNode, prepareNamespace, reapTerminatingPods } from "./kubelet.js";

export interface OperatorFixture {
  cluster: Cluster;
  client: KubeClient;
  op: RunningOperator;
  /** Server-side applies a UnikernelVM in the fixture's namespace (image defaults to a test reference). */
  applyVM(name: string, spec: Partial<UnikernelVMSpec>): Promise<UnikernelVM>;
  getVM(name: string): Promise<UnikernelVM>;
  vmPath(name: string): string;
}

export interface OperatorHarness extends Pick<OperatorFixture, "applyVM" | "getVM" | "vmPath"> {
  cluster: () => Cluster;
  ready: () => Promise<OperatorFixture>;
}

/**
 * Registers the hooks; `ready()` resolves in a test or a later before hook (ava runs before hooks
 * concurrently). `nodes` are deleted afterwards; `beforeStart` runs before the operator starts.
 */
export function useOperator<C>(
  test: TestFn<C>,
  prefix: string,
  o: { nodes?: string[]; beforeStart?: (client: KubeClient) => Promise<void> } = {},
): OperatorHarness {
  const cluster = useCluster(test, prefix);
  let fixture: OperatorFixture | undefined;
  let failed: unknown;
  let stopReaper: (() => void) | undefined;
  test.before(async () => {
    try {
      const c = await clusterReady(cluster);
      const client = new KubeClient(c.cp.kubeConfig);
      await prepareNamespace(client, c.namespace);
      await o.beforeStart?.(client);
      const op = await startOperator({ kubeConfig: c.cp.kubeConfig, namespace: c.namespace, workers: 4 });
      await op.leading;
      stopReaper = reapTerminatingPods(client, c.namespace);
      const vmPath = (name: string) => paths.customObject(UNIKERNELVM_PLURAL, c.namespace, name);
      fixture = {
        cluster: c,
        client,
        op,
        vmPath,
        applyVM: (name, spec) =>
          client.apply<UnikernelVM>(
            vmPath(name),
            {
              apiVersion: API_VERSION,
              kind: "UnikernelVM",
              metadata: { name },
              spec: { image: "registry.local:5000/hello:1", ...spec },
            },
            "superfluid-test",
          ),
        getVM: (name) => client.request<UnikernelVM>({ method: "GET", path: vmPath(name) }),
      };
    } catch (err) {
      failed = err;
      throw err;
    }
  });
  test.after.always(async () => {
    stopReaper?.();
    await fixture?.op.stop();
    // The harness's after hook may be stopping a private control plane at the same time.
    if (fixture) for (const n of o.nodes ?? []) await deleteNode(fixture.client, n).catch(() => undefined);
    fixture?.client.close();
  });
  const current = () => {
    if (!fixture) throw new Error("useOperator: the fixture is only available after ready()");
    return fixture;
  };
  return {
    cluster,
    applyVM: (name, spec) => current().applyVM(name, spec),
    getVM: (name) => current().getVM(name),
    vmPath: (name) => current().vmPath(name),
    async ready() {
      const deadline = Date.now() + 300_000;
      while (!fixture) {
        if (failed) throw failed;
        if (Date.now() > deadline) throw new Error("timed out waiting for the operator fixture");
        await new Promise((r) => setTimeout(r, 100));
      }
      return fixture;
    },
  };
}

/** Polls until probe returns something truthy. */
export function until<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  return waitFor(what, async () => (await probe()) || undefined, ms, 100);
}
