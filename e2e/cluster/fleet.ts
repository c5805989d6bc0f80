// Many UnikernelVMs at once, through the apiserver: created in batches, watched until Ready, deleted
// and watched until gone. What the density benchmark (bench/density.ts) and the Xen suite's density
// test share. Apply→Ready is timed on this host's clock: from just before the create request to the
// watch event that first shows the VM's Ready condition True.
import { API_VERSION, UNIKERNELVM_KIND, UNIKERNELVM_PLURAL, type UnikernelVM } from "../../api/index.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { watchResource, type Watched } from "../../lib/kube/informers.js";
import type { ControlPlane } from "../harness/control-plane.js";

export interface HelloFleetOptions {
  namespace: string;
  /** The hello image as pods name it (exampleImageRef("hello")). */
  image: string;
  /** Seconds between the guest's console ticks: long, so that idle guests stay quiet. */
  intervalSeconds: number;
  /** spec.memory; unset: the image's default. */
  memory?: string;
}

export interface Fleet {
  /** Creates the named VMs (concurrently) and records when each was applied. */
  create(names: string[]): Promise<void>;
  /** Resolves once every named VM is Ready; rejects after timeoutMs naming the ones that are not. */
  waitReady(names: string[], timeoutMs: number): Promise<void>;
  /** Milliseconds from apply to Ready, undefined while not Ready. */
  readyMs(name: string): number | undefined;
  /** Called once per VM when it first shows Ready. */
  onReady(cb: (name: string, ms: number) => void): void;
  /** Deletes every VM of the namespace and waits until none is left (finalizers done: pods gone). */
  deleteAll(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const isReady = (vm: UnikernelVM) =>
  vm.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

async function until(what: () => string | undefined, timeoutMs: number, check: () => boolean) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what() ?? ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function startFleet(cp: Pick<ControlPlane, "kubeConfig">, o: HelloFleetOptions): Promise<Fleet> {
  const client = new KubeClient(cp.kubeConfig);
  const vms: Watched<UnikernelVM> = watchResource<UnikernelVM>(
    undefined,
    client,
    paths.custom(UNIKERNELVM_PLURAL, o.namespace),
  );
  const appliedAt = new Map<string, number>();
  const readyAfter = new Map<string, number>();
  const listeners: Array<(name: string, ms: number) => void> = [];
  const seen = (vm: UnikernelVM) => {
    const name = vm.metadata.name!;
    const applied = appliedAt.get(name);
    if (applied === undefined || readyAfter.has(name) || !isReady(vm)) return;
    const ms = Date.now() - applied;
    readyAfter.set(name, ms);
    for (const cb of listeners) cb(name, ms);
  };
  vms.on("add", seen);
  vms.on("update", seen);
  await vms.start();

  const body = (name: string) => ({
    apiVersion: API_VERSION,
    kind: UNIKERNELVM_KIND,
    metadata: { name, namespace: o.namespace },
    spec: {
      image: o.image,
      ...(o.memory ? { memory: o.memory } : {}),
      args: [`interval=${o.intervalSeconds}`],
    },
  });
  return {
    async create(names) {
      await Promise.all(
        names.map(async (name) => {
          appliedAt.set(name, Date.now());
          await client.request({
            method: "POST",
            path: paths.custom(UNIKERNELVM_PLURAL, o.namespace),
            body: body(name),
          });
        }),
      );
    },
    waitReady(names, timeoutMs) {
      const missing = () => names.filter((n) => !readyAfter.has(n));
      return until(
        () => {
          const m = missing();
          const phases = m.slice(0, 5).map((n) => `${n}:${vms.get(n, o.namespace)?.status?.phase ?? "?"}`);
          return `${m.length} of ${names.length} VMs not Ready (${phases.join(", ")})`;
        },
        timeoutMs,
        () => missing().length === 0,
      );
    },
    readyMs: (name) => readyAfter.get(name),
    onReady: (cb) => void listeners.push(cb),
    async deleteAll(timeoutMs) {
      await client.request({
        method: "DELETE",
        path: paths.custom(UNIKERNELVM_PLURAL, o.namespace),
      });
      await until(
        () => `${vms.list(o.namespace).length} VMs still present`,
        timeoutMs,
        () => vms.list(o.namespace).length === 0,
      );
    },
    async close() {
      await vms.stop();
      client.close();
    },
  };
}
