import type { ContainerState } from "../proto.js";
import { containerView } from "./views.js";
import type { Handler } from "./types.js";

type Filter = {
  id: string;
  pod_sandbox_id: string;
  state: { state: ContainerState } | null;
  label_selector: Record<string, string>;
} | null;
export const listContainers: Handler<{ filter: Filter }> = async (rt, req) => ({
  containers: rt.containers.list(req.filter).map(containerView),
});
