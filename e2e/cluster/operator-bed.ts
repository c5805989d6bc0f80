// The operator in-process against a private control plane, as the cluster-level tests use it: the
// chart's objects installed, the namespace's default ServiceAccount made (no controller-manager runs;
// the ServiceAccount admission plugin wants it), a client, and the operator watching `default`.
import type { ExecutionContext } from "ava";
import { API_VERSION, UNIKERNELVM_KIND, UNIKERNELVM_PLURAL, type UnikernelVMSpec } from "../../api/index.js";
import { KubeClient, paths } from "../../lib/kube/client.js";
import { type OperatorOptions, type RunningOperator, startOperator } from "../../operator/src/operator.js";
import type { ControlPlane } from "../harness/control-plane.js";
import { installChartObjects } from "./chart-objects.js";

export async function operatorBed(
  t: ExecutionContext,
  cp: ControlPlane,
  opts: Omit<OperatorOptions, "kubeConfig">,
): Promise<{
  client: KubeClient;
  op: RunningOperator;
  /** Creates a UnikernelVM in `default`. */
  createVM(name: string, spec: UnikernelVMSpec): Promise<void>;
}> {
  await installChartObjects(cp);
  const client = new KubeClient(cp.kubeConfig);
  t.teardown(() => client.close());
  await client.request({
    method: "POST",
    path: "/api/v1/namespaces/default/serviceaccounts",
    body: { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default" } },
  });
  const op = await startOperator({ kubeConfig: cp.kubeConfig, namespace: "default", workers: 4, ...opts });
  t.teardown(() => op.stop());
  const createVM = async (name: string, spec: UnikernelVMSpec) => {
    await client.request({
      method: "POST",
      path: paths.custom(UNIKERNELVM_PLURAL, "default"),
      body: {
        apiVersion: API_VERSION,
        kind: UNIKERNELVM_KIND,
        metadata: { name, namespace: "default" },
        spec,
      },
    });
  };
  return { client, op, createVM };
}
