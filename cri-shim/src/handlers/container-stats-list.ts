import type { Handler } from "./types.js";

export const listContainerStats: Handler<{
  filter: { id: string; pod_sandbox_id: string; label_selector: Record<string, string> } | null;
}> = async (rt, req) => {
  const f = req.filter;
  const containers = rt.containers.list({
    id: f?.id ?? "",
    pod_sandbox_id: f?.pod_sandbox_id ?? "",
    state: { state: "CONTAINER_RUNNING" },
    label_selector: f?.label_selector ?? {},
  });
  return { stats: await rt.stats.containers(containers) };
};
