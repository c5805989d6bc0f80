// What a kubelet and the node agent would write, done by the test: a Node object, pod bindings,
// pod status, the node agent's slice of the VM's status, and the final removal of terminating pods. The apiserver,
// admission and the operator are real; only the node side is played by the test.
import type { V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  type DomainState,
  LABELS,
  nodeAgentFieldManager,
  RESOURCES,
  UNIKERNELVM_KIND,
  UNIKERNELVM_PLURAL,
} from "../../api/index.js";
import type { Cluster } from "../../e2e/harness/ava.js";
import { applyRuntimeClass } from "../../e2e/harness/runtime-class.js";
import { waitFor } from "../../lib/net.js";
import { isNotFound, type KubeClient, paths } from "../../lib/kube/client.js";

export async function createXenNode(
  client: KubeClient,
  name: string,
  labels: Record<string, string> = { [LABELS.xenNode]: "true" },
  allocatableMemory = "8Gi",
): Promise<void> {
  await client.request({
    method: "POST",
    path: paths.nodes(),
    body: { apiVersion: "v1", kind: "Node", metadata: { name, labels } },
  });
  // A Xen node's agent publishes the memory Xen can give guests as an extended resource (MiB); the
  // test node offers the same figure there as in its memory.
  const m = /^(\d+)(Mi|Gi)$/.exec(allocatableMemory);
  if (!m) throw new Error(`createXenNode: memory ${allocatableMemory} is not <n>Mi or <n>Gi`);
  const guestMiB = Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
  const resources = {
    cpu: "4",
    memory: allocatableMemory,
    pods: "110",
    ...(labels[LABELS.xenNode] === "true" ? { [RESOURCES.guestMemoryMiB]: String(guestMiB) } : {}),
  };
  await client.request({
    method: "PATCH",
    path: `/api/v1/nodes/${name}/status`,
    contentType: "application/merge-patch+json",
    body: {
      status: {
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "test kubelet",
            lastHeartbeatTime: new Date().toISOString(),
            lastTransitionTime: new Date().toISOString(),
          },
        ],
        capacity: resources,
        allocatable: resources,
      },
    },
  });
  // Admission taints a new node not-ready; kube-controller-manager's node lifecycle controller
  // lifts the taint once the node reports Ready. That controller does not run here.
  await client.request({
    method: "PATCH",
    path: `/api/v1/nodes/${name}`,
    contentType: "application/merge-patch+json",
    body: { spec: { taints: null } },
  });
}

export async function deleteNode(client: KubeClient, name: string): Promise<void> {
  await client.request({ method: "DELETE", path: `/api/v1/nodes/${name}` }).catch((e: unknown) => {
    if (!isNotFound(e)) throw e;
  });
}

export async function listPods(client: KubeClient, ns: string, selector?: string): Promise<V1Pod[]> {
  const list = await client.request<{ items: V1Pod[] }>({
    method: "GET",
    path: paths.pods(ns),
    query: { labelSelector: selector },
  });
  return list.items;
}

export async function bind(client: KubeClient, pod: V1Pod, node: string): Promise<void> {
  const ns = pod.metadata!.namespace!;
  await client.request({
    method: "POST",
    path: `${paths.pod(ns, pod.metadata!.name!)}/binding`,
    body: {
      apiVersion: "v1",
      kind: "Binding",
      metadata: { name: pod.metadata!.name },
      target: { apiVersion: "v1", kind: "Node", name: node },
    },
  });
}

/**
 * What the node agent of the pod's node applies on the VM's status for a domain it sees: the domain's
 * id and state, under its own field manager (the real agent sends its conditions in the same apply).
 */
export async function reportDomain(
  client: KubeClient,
  pod: V1Pod,
  o: { domainId: number; domainState?: DomainState },
): Promise<void> {
  const ns = pod.metadata!.namespace!;
  const bound = await client.request<V1Pod>({ method: "GET", path: paths.pod(ns, pod.metadata!.name!) });
  const [vmNs, vmName] = (bound.metadata?.annotations?.[ANNOTATIONS.vm] ?? "").split("/");
  const node = bound.spec?.nodeName;
  if (!vmNs || !vmName || !node)
    throw new Error(`reportDomain: ${ns}/${pod.metadata!.name} runs no VM on a node`);
  await client.apply(
    `${paths.customObject(UNIKERNELVM_PLURAL, vmNs, vmName)}`,
    {
      apiVersion: API_VERSION,
      kind: UNIKERNELVM_KIND,
      metadata: { name: vmName, namespace: vmNs },
      status: { domainId: o.domainId, domainState: o.domainState ?? "running" },
    },
    nodeAgentFieldManager(node),
    "status",
  );
}

/** The node agent's report on the VM and the kubelet's status for a domain that booted. */
export async function reportRunning(
  client: KubeClient,
  pod: V1Pod,
  o: { ip: string; domainId: number; bootMs: number; ready?: boolean; domainState?: DomainState },
): Promise<void> {
  const ns = pod.metadata!.namespace!;
  const path = paths.pod(ns, pod.metadata!.name!);
  await reportDomain(client, pod, o);
  // Nothing on the node writes this annotation today; the operator still reads it (boot-time-ms).
  await client.request({
    method: "PATCH",
    path,
    contentType: "application/merge-patch+json",
    body: { metadata: { annotations: { [ANNOTATIONS.bootTimeMs]: String(o.bootMs) } } },
  });
  const now = new Date().toISOString();
  const ready = o.ready ?? true;
  await client.request({
    method: "PATCH",
    path: `${path}/status`,
    contentType: "application/merge-patch+json",
    body: {
      status: {
        phase: "Running",
        podIP: o.ip,
        podIPs: [{ ip: o.ip }],
        startTime: now,
        conditions: [
          { type: "PodScheduled", status: "True", lastTransitionTime: now },
          { type: "Initialized", status: "True", lastTransitionTime: now },
          { type: "ContainersReady", status: ready ? "True" : "False", lastTransitionTime: now },
          { type: "Ready", status: ready ? "True" : "False", lastTransitionTime: now },
        ],
        containerStatuses: [
          {
            name: "unikernel",
            image: pod.spec!.containers[0]!.image,
            imageID: "",
            ready,
            restartCount: 0,
            started: true,
            state: { running: { startedAt: now } },
          },
        ],
      },
    },
  });
}

export async function reportWaiting(
  client: KubeClient,
  pod: V1Pod,
  reason: string,
  message: string,
): Promise<void> {
  await client.request({
    method: "PATCH",
    path: `${paths.pod(pod.metadata!.namespace!, pod.metadata!.name!)}/status`,
    contentType: "application/merge-patch+json",
    body: {
      status: {
        phase: "Pending",
        containerStatuses: [
          {
            name: "unikernel",
            image: pod.spec!.containers[0]!.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { waiting: { reason, message } },
          },
        ],
      },
    },
  });
}

/** A kubelet confirms a terminating pod's end by deleting it for good; this does the same, every 200 ms. */
export function reapTerminatingPods(client: KubeClient, ns: string): () => void {
  let stopped = false;
  const loop = async () => {
    while (!stopped) {
      try {
        for (const p of await listPods(client, ns)) {
          if (!p.metadata?.deletionTimestamp) continue;
          await client
            .request({
              method: "DELETE",
              path: paths.pod(ns, p.metadata.name!),
              body: { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 },
            })
            .catch(() => undefined);
        }
      } catch {
        /* the namespace may be going away */
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  void loop();
  return () => {
    stopped = true;
  };
}

/** ava runs before hooks concurrently: this waits for the harness's hook to have made the namespace. */
export function clusterReady(cluster: () => Cluster): Promise<Cluster> {
  return waitFor(
    "the test cluster",
    async () => {
      try {
        return cluster();
      } catch {
        return undefined;
      }
    },
    180_000,
    100,
  );
}

/** What kube-controller-manager and a cluster admin would have set up for pods to be admitted. */
export async function prepareNamespace(c: KubeClient, ns: string): Promise<void> {
  // Without kube-controller-manager nobody creates the default ServiceAccount, and pod admission wants it.
  await c
    .request({
      method: "POST",
      path: `/api/v1/namespaces/${ns}/serviceaccounts`,
      body: { metadata: { name: "default" } },
    })
    .catch(() => undefined);
  // Pods naming a RuntimeClass that does not exist are rejected at admission.
  await applyRuntimeClass(c, "superfluid-test");
}
