import type { LinuxContainerResources } from "../proto.js";
import type { Handler } from "./types.js";

export const updateContainerResources: Handler<{
  container_id: string;
  linux: LinuxContainerResources | null;
}> = async (rt, req) => {
  await rt.containers.updateResources(req.container_id, req.linux);
  return {};
};
