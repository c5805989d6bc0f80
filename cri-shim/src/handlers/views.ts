// Store entries -> CRI messages. Kept apart from the handlers so List and Status agree field by field.
import type { ContainerEntry } from "../services/containers.js";
import { criContainerState } from "../services/container-state.js";
import type { ImageInfo } from "../services/image-backend.js";
import type { SandboxEntry } from "../services/sandboxes.js";
import { criSandboxState } from "../services/sandboxes.js";
import type { Container, ContainerStatus, Image, PodSandbox, PodSandboxStatus } from "../proto.js";

export function sandboxView(sb: SandboxEntry): PodSandbox {
  return {
    id: sb.meta.id,
    metadata: sb.meta.metadata,
    state: criSandboxState(sb.status),
    created_at: sb.meta.createdAt,
    labels: sb.meta.labels,
    annotations: sb.meta.annotations,
    runtime_handler: sb.meta.runtimeHandler,
  };
}

export function sandboxStatusView(sb: SandboxEntry): PodSandboxStatus {
  return {
    ...sandboxView(sb),
    network: { ip: sb.status.network?.ip ?? "", additional_ips: [] },
    // A Xen guest shares no namespace with the node: report POD mode for all three.
    linux: { namespaces: { options: { network: "POD", pid: "POD", ipc: "POD" } } },
  };
}

export function containerView(c: ContainerEntry): Container {
  return {
    id: c.meta.id,
    pod_sandbox_id: c.meta.sandboxId,
    metadata: c.meta.metadata,
    image: c.meta.image,
    image_ref: c.meta.imageRef,
    image_id: c.meta.imageId,
    state: criContainerState(c.status),
    created_at: c.meta.createdAt,
    labels: c.meta.labels,
    annotations: c.meta.annotations,
  };
}

export function containerStatusView(c: ContainerEntry): ContainerStatus {
  return {
    id: c.meta.id,
    metadata: c.meta.metadata,
    state: criContainerState(c.status),
    created_at: c.meta.createdAt,
    started_at: c.status.startedAt,
    finished_at: c.status.finishedAt,
    exit_code: c.status.exitCode,
    image: c.meta.image,
    image_ref: c.meta.imageRef,
    image_id: c.meta.imageId,
    reason: c.status.reason,
    message: c.status.message,
    labels: c.meta.labels,
    annotations: c.meta.annotations,
    mounts: [],
    log_path: c.meta.logPath,
    resources: {
      linux: {
        memory_limit_in_bytes: String(c.status.memoryMiB * 1024 * 1024),
        cpu_period: "100000",
        cpu_quota: String(c.status.vcpus * 100000),
      },
    },
  };
}

export function imageView(img: ImageInfo): Image {
  return {
    id: img.id,
    repo_tags: img.refs,
    repo_digests: img.repoDigests,
    size: String(img.sizeBytes),
    uid: null,
    username: "",
    spec: { image: img.id, annotations: {} },
    pinned: false,
  };
}

/**
 * A pod's containers, newest first, as the kubelet reads PodSandboxStatus's containers_statuses: with
 * its EventedPLEG on, its relist takes that list as the pod's statuses without sorting it (where its
 * other paths sort by creation) and looks a container up by name as the first match. Oldest first, a
 * restarted pod's exited predecessor came first: the kubelet took the running VM for dead, asked again
 * for the attempt that already ran ("already exists") and kept the pod in CrashLoopBackOff.
 */
export function newestFirst(members: readonly ContainerEntry[]): ContainerEntry[] {
  return [...members].sort(
    (a, b) =>
      compareNs(b.meta.createdAt, a.meta.createdAt) ||
      b.meta.metadata.attempt - a.meta.metadata.attempt ||
      (a.meta.id < b.meta.id ? -1 : a.meta.id > b.meta.id ? 1 : 0),
  );
}

const ns = (s: string): bigint => (/^\d{1,20}$/.test(s) ? BigInt(s) : 0n);
function compareNs(a: string, b: string): number {
  const x = ns(a),
    y = ns(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
