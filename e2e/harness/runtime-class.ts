// The RuntimeClass the operator's pods name, as a bare cluster needs it for the apiserver to admit
// them (the chart's has the pod overhead and node selector too).
import { RUNTIME_CLASS } from "../../api/index.js";
import type { KubeClient } from "../../lib/kube/client.js";

export async function applyRuntimeClass(client: KubeClient, fieldManager: string): Promise<void> {
  await client.apply(
    `/apis/node.k8s.io/v1/runtimeclasses/${RUNTIME_CLASS}`,
    {
      apiVersion: "node.k8s.io/v1",
      kind: "RuntimeClass",
      metadata: { name: RUNTIME_CLASS },
      handler: RUNTIME_CLASS,
    },
    fieldManager,
  );
}
