// Gives each ava test file its own namespace on a shared control plane. scripts/test.mjs starts one
// control plane for the whole run and passes it in SUPERFLUID_TEST_CONTROL_PLANE; a file run on its
// own (`npx ava dist/...`) starts a private one.
import { CoreV1Api, CustomObjectsApi, KubernetesObjectApi } from "@kubernetes/client-node";
import type { TestFn } from "ava";
import { randomBytes } from "node:crypto";
import { attachControlPlane, type ControlPlane, startControlPlane } from "./control-plane.js";

export interface Cluster {
  cp: ControlPlane;
  namespace: string;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  objects: KubernetesObjectApi;
  /** kubectl in this file's namespace. */
  kubectl(args: string[], opts?: { input?: string }): ReturnType<ControlPlane["kubectl"]>;
}

export const SHARED_CONTROL_PLANE_ENV = "SUPERFLUID_TEST_CONTROL_PLANE";

/**
 * Registers before/after hooks on `test` and returns a getter for the cluster. Call at module top
 * level: `const cluster = useCluster(test, "operator")`.
 */
export function useCluster<C>(test: TestFn<C>, prefix: string): () => Cluster {
  let cluster: Cluster | undefined;
  let ownsControlPlane = false;
  test.before(async () => {
    const shared = process.env[SHARED_CONTROL_PLANE_ENV];
    const cp = shared ? attachControlPlane(shared) : await startControlPlane();
    ownsControlPlane = !shared;
    const namespace = `${prefix}-${randomBytes(3).toString("hex")}`.toLowerCase().slice(0, 63);
    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    await core.createNamespace({
      body: { metadata: { name: namespace, labels: { "superfluid.dev/test": prefix } } },
    });
    cluster = {
      cp,
      namespace,
      core,
      custom: cp.kubeConfig.makeApiClient(CustomObjectsApi),
      objects: KubernetesObjectApi.makeApiClient(cp.kubeConfig),
      kubectl: (args, opts) => cp.kubectl(["--namespace", namespace, ...args], opts),
    };
  });
  test.after.always(async () => {
    if (!cluster) return;
    if (ownsControlPlane) await cluster.cp.stop();
    else {
      await cluster.core.deleteNamespace({ name: cluster.namespace }).catch(() => undefined);
      await cluster.cp.stop();
    }
  });
  return () => {
    if (!cluster)
      throw new Error("useCluster: the cluster is only available inside tests (after test.before ran)");
    return cluster;
  };
}
