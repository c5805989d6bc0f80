// Which runtime answers a CRI call: a pure rule chain over what the dispatcher observed. Our pods are
// the sandboxes run with one of our runtime handlers (superfluid) and their containers; everything
// else belongs to the fallback runtime (containerd). Without a fallback every call is ours, as before.

export type Backend = "ours" | "fallback";

export type Plan =
  /** One side answers, with the request as it came. */
  | { do: "one"; backend: Backend; why: string }
  /** Both answer; the encoded responses are concatenated (list calls). */
  | { do: "merge"; why: string }
  /** Both answer; conditions combined (Status). */
  | { do: "status"; why: string }
  /** Both are told; the call succeeds when both do (UpdateRuntimeConfig). */
  | { do: "both"; why: string }
  /** Ours when our store has the image, else the fallback (ImageStatus, RemoveImage). */
  | { do: "image-lookup"; why: string }
  /** Ask the registry what the image is: a unikernel is ours, a Linux image the fallback's. */
  | { do: "image-format"; why: string };

export interface Facts {
  method: string;
  hasFallback: boolean;
  /** Our runtime handlers (superfluid). */
  ourHandlers: readonly string[];
  /** RunPodSandbox's runtime_handler, or the image spec's runtime_handler on image calls. */
  runtimeHandler?: string;
  /** For calls that name a sandbox or container: does our store hold it? */
  idIsOurs?: boolean;
  /** PullImage with a sandbox_config: is that pod one of our sandboxes? undefined without a config. */
  podIsOurs?: boolean;
}

/** Calls keyed by a sandbox id or a container id (the field is given to the dispatcher's observer). */
export const BY_SANDBOX: Record<string, true> = {
  StopPodSandbox: true,
  RemovePodSandbox: true,
  PodSandboxStatus: true,
  PodSandboxStats: true,
  CreateContainer: true,
  PortForward: true,
};
export const BY_CONTAINER: Record<string, true> = {
  StartContainer: true,
  StopContainer: true,
  RemoveContainer: true,
  ContainerStatus: true,
  UpdateContainerResources: true,
  ReopenContainerLog: true,
  ContainerStats: true,
  ExecSync: true,
  Exec: true,
  Attach: true,
};
const MERGED = new Set([
  "ListPodSandbox",
  "ListContainers",
  "ListContainerStats",
  "ListPodSandboxStats",
  "ListImages",
  "ImageFsInfo",
]);

const byHandler = (f: Facts, handler: string): Backend =>
  f.ourHandlers.includes(handler) ? "ours" : "fallback";

export function planCall(f: Facts): Plan {
  if (!f.hasFallback) return { do: "one", backend: "ours", why: "no fallback runtime configured" };
  const m = f.method;
  if (m === "Version") return { do: "one", backend: "ours", why: "the front answers for itself" };
  if (m === "Status") return { do: "status", why: "node readiness needs both runtimes" };
  if (m === "RuntimeConfig")
    return { do: "one", backend: "fallback", why: "the cgroup driver is the Linux runtime's" };
  if (m === "UpdateRuntimeConfig") return { do: "both", why: "both runtimes take the pod CIDR" };
  if (MERGED.has(m)) return { do: "merge", why: "lists show both runtimes" };
  if (m === "RunPodSandbox") {
    const h = f.runtimeHandler ?? "";
    return { do: "one", backend: byHandler(f, h), why: `runtime handler ${JSON.stringify(h)}` };
  }
  if (BY_SANDBOX[m] || BY_CONTAINER[m])
    return f.idIsOurs
      ? { do: "one", backend: "ours", why: "id in our store" }
      : { do: "one", backend: "fallback", why: "id not in our store" };
  if (f.runtimeHandler)
    return { do: "one", backend: byHandler(f, f.runtimeHandler), why: "image spec names the handler" };
  if (m === "PullImage") {
    if (f.podIsOurs === true) return { do: "one", backend: "ours", why: "the pod is one of our sandboxes" };
    if (f.podIsOurs === false)
      return { do: "one", backend: "fallback", why: "the pod is the fallback runtime's" };
    return { do: "image-format", why: "no pod given: the image's format decides" };
  }
  if (m === "ImageStatus" || m === "RemoveImage")
    return { do: "image-lookup", why: "the runtime that holds the image" };
  return { do: "one", backend: "ours", why: "not a dispatched call" };
}
