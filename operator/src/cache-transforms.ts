// What the operator's informer caches keep of pods and nodes: what its controllers read, not whole
// objects (managedFields are dropped for every kind by lib/kube/informers.ts). At 10,000 VMs the pod
// cache is most of the operator's memory; a pod's volumes, env, probes and a node's image list are
// read by nobody here.
import type { V1Node, V1Pod } from "@kubernetes/client-node";

/** Pods: metadata, the node they are bound to, each container's name and resources, the status. */
export function podTransform(pod: V1Pod): V1Pod {
  const spec = pod.spec;
  if (!spec) return pod;
  return {
    ...pod,
    spec: {
      ...(spec.nodeName ? { nodeName: spec.nodeName } : {}),
      containers: spec.containers.map((c) => ({
        name: c.name,
        ...(c.image ? { image: c.image } : {}),
        ...(c.resources ? { resources: c.resources } : {}),
      })),
    },
  };
}

/** Nodes: metadata, spec (taints, unschedulable), and of the status its conditions and sizes. */
export function nodeTransform(node: V1Node): V1Node {
  const st = node.status;
  if (!st) return node;
  return {
    ...node,
    status: {
      ...(st.conditions ? { conditions: st.conditions } : {}),
      ...(st.allocatable ? { allocatable: st.allocatable } : {}),
      ...(st.capacity ? { capacity: st.capacity } : {}),
      ...(st.addresses ? { addresses: st.addresses } : {}),
    },
  };
}
