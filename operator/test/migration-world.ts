// What the migration integration tests do to and read from the real apiserver, in one place: the
// test plays the kubelets (pod binding and status) and the node agents (their part of the
// migration's status, applied with their own field managers), and reads migrations, pods and Events.
import type { V1Pod } from "@kubernetes/client-node";
import {
  API_VERSION,
  type Condition,
  LABELS,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type MigrationStatus,
  nodeAgentFieldManager,
  type UnikernelVMMigration,
  type UnikernelVMSpec,
} from "../../api/index.js";
import { podName } from "../src/desired.js";
import { isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";
import { main as kubectlSuperfluid } from "../../tools/kubectl-superfluid.js";
import { bind, listPods, reportRunning } from "./kubelet.js";
import { type OperatorHarness, until } from "./operator-harness.js";

export interface RecordedEvent {
  reason: string;
  type: string;
  message: string;
}

/** A condition as an agent writes it, stamped now. */
export const agentCondition = (
  type: string,
  status: Condition["status"],
  reason: string,
  message = reason,
): Condition => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
});

/** The helpers over one operator fixture; `client` is called after the fixture is ready. */
export function migrationWorld(operator: OperatorHarness, client: () => KubeClient) {
  const ns = () => operator.cluster().namespace;
  const mPath = (name: string) => paths.customObject(MIGRATION_PLURAL, ns(), name);
  const getM = (name: string) => client().request<UnikernelVMMigration>({ method: "GET", path: mPath(name) });
  const getPod = (name: string) =>
    client()
      .request<V1Pod>({ method: "GET", path: paths.pod(ns(), name) })
      .catch((e: unknown) => {
        if (isNotFound(e)) return undefined;
        throw e;
      });
  return {
    ns,
    mPath,
    getM,
    getPod,

    /** A VM whose pod the test's "kubelet" bound to the node and reported running. */
    async runningVM(name: string, node: string, spec: Partial<UnikernelVMSpec> = {}): Promise<V1Pod> {
      const vm = await operator.applyVM(name, { memory: "32Mi", ...spec });
      const pod = await until(`${name}'s pod`, () => getPod(podName(vm)));
      await bind(client(), pod, node);
      await reportRunning(client(), pod, { ip: "10.244.1.5", domainId: 7, bootMs: 30 });
      await until(`${name} Running`, async () => (await operator.getVM(name)).status?.phase === "Running");
      return (await getPod(podName(vm)))!;
    },

    createMigration(name: string, vmName: string, targetNode?: string): Promise<UnikernelVMMigration> {
      return client().request<UnikernelVMMigration>({
        method: "POST",
        path: paths.custom(MIGRATION_PLURAL, ns()),
        body: {
          apiVersion: API_VERSION,
          kind: MIGRATION_KIND,
          metadata: { name },
          spec: { vmName, ...(targetNode ? { targetNode } : {}) },
        },
      });
    },

    /**
     * `kubectl superfluid migrate VM --to NODE --wait` as a user runs it, while the test plays the
     * nodes: the migration it made, and its exit code and output once it ends.
     */
    async pluginMigrate(
      vmName: string,
      to: string,
    ): Promise<{ m: UnikernelVMMigration; exit: Promise<number>; output: string[] }> {
      const output: string[] = [];
      const kubeconfig = operator.cluster().cp.kubeconfigPath;
      const exit = kubectlSuperfluid(
        ["migrate", vmName, "--to", to, "--wait", "--kubeconfig", kubeconfig, "-n", ns()],
        (s) => output.push(s),
      );
      const m = await until(`the plugin's migration of ${vmName}`, async () => {
        const list = await client().request<{ items: UnikernelVMMigration[] }>({
          method: "GET",
          path: paths.custom(MIGRATION_PLURAL, ns()),
        });
        return list.items.find((x) => x.spec.vmName === vmName);
      });
      return { m, exit, output };
    },

    phaseIs: (name: string, phase: MigrationStatus["phase"]) =>
      until(`${name} ${phase}`, async () => {
        const m = await getM(name);
        return m.status?.phase === phase && m;
      }),

    /** What a node agent writes: server-side apply of the status with its own field manager. */
    agentApply(migration: string, node: string, status: MigrationStatus): Promise<unknown> {
      return client().apply(
        mPath(migration),
        { apiVersion: API_VERSION, kind: MIGRATION_KIND, metadata: { name: migration }, status },
        nodeAgentFieldManager(node),
        "status",
      );
    },

    /** The Events about the object of that name in the namespace. */
    async events(name: string): Promise<RecordedEvent[]> {
      const list = await client().request<{
        items: (RecordedEvent & { involvedObject: { name: string } })[];
      }>({ method: "GET", path: paths.events(ns()) });
      return list.items.filter((e) => e.involvedObject.name === name);
    },

    /**
     * The Events about the object once `ok` holds for them. Events go after the writes they tell of,
     * and wait while the operator's work queue is busy: a test reads them when they have come.
     */
    eventsOnce(name: string, ok: (es: RecordedEvent[]) => boolean): Promise<RecordedEvent[]> {
      return until(`${name}'s events`, async () => {
        const list = await client().request<{
          items: (RecordedEvent & { involvedObject: { name: string } })[];
        }>({ method: "GET", path: paths.events(ns()) });
        const es = list.items.filter((e) => e.involvedObject.name === name);
        return ok(es) && es;
      });
    },

    /** The VM's pods that are not being deleted. */
    podsOfVM: async (vm: string) =>
      (await listPods(client(), ns(), `${LABELS.vm}=${vm}`)).filter((p) => !p.metadata?.deletionTimestamp),
  };
}
