// Where things live on the machine: the repo, the binary cache that setup fills.
import { dirname, join } from "node:path";
import { homedir } from "node:os";
import { fileURLToPath } from "node:url";

/** The repository root (this file compiles to dist/lib/paths.js). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const K8S_VERSION = process.env.K8S_VERSION ?? "v1.36.3";
export const CACHE_DIR = process.env.SUPERFLUID_CACHE ?? join(homedir(), ".cache", "superfluid");
/** Binaries built by scripts/build-k8s-binaries.sh. */
export const K8S_BIN_DIR = join(CACHE_DIR, "bin", K8S_VERSION);

export function k8sBinary(
  name:
    | "etcd"
    | "kube-apiserver"
    | "kube-controller-manager"
    | "kube-scheduler"
    | "kubelet"
    | "kubectl"
    | "crictl"
    | "critest"
    | "helm"
    | "kubeconform",
): string {
  return join(K8S_BIN_DIR, name);
}
