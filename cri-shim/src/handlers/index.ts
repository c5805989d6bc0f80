// Method name -> handler, per CRI service. Anything not listed is answered UNIMPLEMENTED by grpc-js.
import { attach, exec, execSync, portForward } from "./unimplemented.js";
import { containerStats } from "./container-stats.js";
import { containerStatus } from "./container-status.js";
import { createContainer } from "./container-create.js";
import { imageFsInfo } from "./image-fsinfo.js";
import { imageStatus } from "./image-status.js";
import { listContainerStats } from "./container-stats-list.js";
import { listContainers } from "./container-list.js";
import { listImages } from "./image-list.js";
import { listPodSandbox } from "./sandbox-list.js";
import { listPodSandboxStats } from "./sandbox-stats-list.js";
import { podSandboxStats } from "./sandbox-stats.js";
import { podSandboxStatus } from "./sandbox-status.js";
import { pullImage } from "./image-pull.js";
import { removeContainer } from "./container-remove.js";
import { removeImage } from "./image-remove.js";
import { removePodSandbox } from "./sandbox-remove.js";
import { reopenContainerLog } from "./container-log-reopen.js";
import { runPodSandbox } from "./sandbox-run.js";
import { runtimeConfig } from "./runtime-config.js";
import { startContainer } from "./container-start.js";
import { status } from "./status.js";
import { stopContainer } from "./container-stop.js";
import { stopPodSandbox } from "./sandbox-stop.js";
import { updateContainerResources } from "./container-update.js";
import { updateRuntimeConfig } from "./runtime-config-update.js";
import { version } from "./version.js";
import type { Handler } from "./types.js";

// Handlers are typed by their own request shape; the table erases that for the server.
type AnyHandler = Handler<never, unknown>;

export const RUNTIME_HANDLERS: Record<string, AnyHandler> = {
  Version: version,
  Status: status,
  RuntimeConfig: runtimeConfig,
  UpdateRuntimeConfig: updateRuntimeConfig,
  RunPodSandbox: runPodSandbox,
  StopPodSandbox: stopPodSandbox,
  RemovePodSandbox: removePodSandbox,
  PodSandboxStatus: podSandboxStatus,
  ListPodSandbox: listPodSandbox,
  PodSandboxStats: podSandboxStats,
  ListPodSandboxStats: listPodSandboxStats,
  CreateContainer: createContainer,
  StartContainer: startContainer,
  StopContainer: stopContainer,
  RemoveContainer: removeContainer,
  ListContainers: listContainers,
  ContainerStatus: containerStatus,
  UpdateContainerResources: updateContainerResources,
  ContainerStats: containerStats,
  ListContainerStats: listContainerStats,
  ReopenContainerLog: reopenContainerLog,
  ExecSync: execSync,
  Exec: exec,
  Attach: attach,
  PortForward: portForward,
};

export const IMAGE_HANDLERS: Record<string, AnyHandler> = {
  PullImage: pullImage,
  ImageStatus: imageStatus,
  ListImages: listImages,
  RemoveImage: removeImage,
  ImageFsInfo: imageFsInfo,
};
