import type { Handler } from "./types.js";

export const listPodSandboxStats: Handler<{
  filter: { id: string; label_selector: Record<string, string> } | null;
}> = async (rt, req) => {
  const sandboxes = rt.sandboxes.list({
    id: req.filter?.id ?? "",
    state: { state: "SANDBOX_READY" },
    label_selector: req.filter?.label_selector ?? {},
  });
  return { stats: await rt.stats.sandboxes(sandboxes) };
};
