import type { Handler } from "./types.js";

export const podSandboxStats: Handler<{ pod_sandbox_id: string }> = async (rt, req) => ({
  stats: await rt.stats.sandbox(rt.sandboxes.mustGet(req.pod_sandbox_id)),
});
