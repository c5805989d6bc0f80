// Loads cri-shim/proto/api.proto and types the CRI messages the handlers read and write. Field names
// keep the proto's snake_case (keepCase) so they read the same as the upstream spec; int64 travels as
// a decimal string (nanosecond timestamps do not fit in a double); enums travel by name.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { REPO_ROOT } from "../../lib/paths.js";

/**
 * The proto ships in the source tree (cri-shim/proto), found from REPO_ROOT rather than from this
 * module's own URL: bundled (dist/bundle/cri-shim.mjs) this module has no directory of its own.
 */
export const CRI_PROTO_PATH = join(REPO_ROOT, "cri-shim", "proto", "api.proto");

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export interface CriServices {
  runtime: grpc.ServiceDefinition;
  image: grpc.ServiceDefinition;
  /** Client constructors, for tests and tools that speak CRI to a shim. */
  RuntimeClient: grpc.ServiceClientConstructor;
  ImageClient: grpc.ServiceClientConstructor;
}

export function loadCriServices(): CriServices {
  const def = protoLoader.loadSync(CRI_PROTO_PATH, LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    runtime: { v1: Record<string, grpc.ServiceClientConstructor> };
  };
  const RuntimeClient = pkg.runtime.v1.RuntimeService!;
  const ImageClient = pkg.runtime.v1.ImageService!;
  return { runtime: RuntimeClient.service, image: ImageClient.service, RuntimeClient, ImageClient };
}

export type StringMap = Record<string, string>;
/** int64 on the wire, decimal string in JS. */
export type Int64 = string;

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}
export interface DNSConfig {
  servers: string[];
  searches: string[];
  options: string[];
}
export interface LinuxContainerResources {
  cpu_period: Int64;
  cpu_quota: Int64;
  cpu_shares: Int64;
  memory_limit_in_bytes: Int64;
  oom_score_adj: Int64;
  cpuset_cpus: string;
  cpuset_mems: string;
  unified: StringMap;
  memory_swap_limit_in_bytes: Int64;
}
export interface PodSandboxConfig {
  metadata: PodSandboxMetadata | null;
  hostname: string;
  log_directory: string;
  dns_config: DNSConfig | null;
  labels: StringMap;
  annotations: StringMap;
  linux: { cgroup_parent: string; resources: LinuxContainerResources | null } | null;
}
export type PodSandboxState = "SANDBOX_READY" | "SANDBOX_NOTREADY";
export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  created_at: Int64;
  labels: StringMap;
  annotations: StringMap;
  runtime_handler: string;
}
export interface PodSandboxStatus extends PodSandbox {
  network: { ip: string; additional_ips: { ip: string }[] };
  linux: { namespaces: { options: { network: string; pid: string; ipc: string } } };
}

export interface ImageSpec {
  image: string;
  annotations: StringMap;
  user_specified_image?: string;
  runtime_handler?: string;
  image_ref?: string;
}
export interface ContainerMetadata {
  name: string;
  attempt: number;
}
export interface ContainerConfig {
  metadata: ContainerMetadata | null;
  image: ImageSpec | null;
  command: string[];
  args: string[];
  working_dir: string;
  envs: { key: string; value: Buffer }[];
  labels: StringMap;
  annotations: StringMap;
  log_path: string;
  tty: boolean;
  linux: { resources: LinuxContainerResources | null } | null;
}
export type ContainerState =
  "CONTAINER_CREATED" | "CONTAINER_RUNNING" | "CONTAINER_EXITED" | "CONTAINER_UNKNOWN";
export interface Container {
  id: string;
  pod_sandbox_id: string;
  metadata: ContainerMetadata;
  image: ImageSpec;
  image_ref: string;
  image_id: string;
  state: ContainerState;
  created_at: Int64;
  labels: StringMap;
  annotations: StringMap;
}
export interface ContainerStatus {
  id: string;
  metadata: ContainerMetadata;
  state: ContainerState;
  created_at: Int64;
  started_at: Int64;
  finished_at: Int64;
  exit_code: number;
  image: ImageSpec;
  image_ref: string;
  image_id: string;
  reason: string;
  message: string;
  labels: StringMap;
  annotations: StringMap;
  mounts: never[];
  log_path: string;
  resources: { linux: Partial<LinuxContainerResources> } | null;
}

export type ContainerEventType =
  | "CONTAINER_CREATED_EVENT"
  | "CONTAINER_STARTED_EVENT"
  | "CONTAINER_STOPPED_EVENT"
  | "CONTAINER_DELETED_EVENT";
/** One message of GetContainerEvents: what happened to a container (or a sandbox) and the pod's state after it. */
export interface ContainerEventResponse {
  container_id: string;
  container_event_type: ContainerEventType;
  created_at: Int64;
  pod_sandbox_status: PodSandboxStatus;
  containers_statuses: ContainerStatus[];
}

export interface UInt64Value {
  value: Int64;
}
export interface CpuUsage {
  timestamp: Int64;
  usage_core_nano_seconds: UInt64Value;
  usage_nano_cores?: UInt64Value;
}
export interface MemoryUsage {
  timestamp: Int64;
  working_set_bytes: UInt64Value;
  available_bytes: UInt64Value;
  usage_bytes: UInt64Value;
}
export interface ContainerStats {
  attributes: { id: string; metadata: ContainerMetadata; labels: StringMap; annotations: StringMap };
  cpu: CpuUsage;
  memory: MemoryUsage;
  writable_layer: FilesystemUsage | null;
}
export interface PodSandboxStats {
  attributes: { id: string; metadata: PodSandboxMetadata; labels: StringMap; annotations: StringMap };
  linux: { cpu: CpuUsage; memory: MemoryUsage; containers: ContainerStats[] };
}
export interface FilesystemUsage {
  timestamp: Int64;
  fs_id: { mountpoint: string };
  used_bytes: UInt64Value;
  inodes_used: UInt64Value;
}

export interface Image {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: Int64;
  uid: { value: Int64 } | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}
export interface AuthConfig {
  username: string;
  password: string;
  auth: string;
  server_address: string;
  identity_token: string;
  registry_token: string;
}

/** Now as CRI nanoseconds since the epoch. */
export function nowNs(): Int64 {
  return (BigInt(Date.now()) * 1_000_000n).toString();
}
