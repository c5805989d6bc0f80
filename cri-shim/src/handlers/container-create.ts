import type { ContainerConfig } from "../proto.js";
import type { Handler } from "./types.js";

export const createContainer: Handler<{ pod_sandbox_id: string; config: ContainerConfig | null }> = async (
  rt,
  req,
) => ({
  container_id: await rt.containers.create(req.pod_sandbox_id, req.config),
});
