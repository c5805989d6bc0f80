import type { Handler } from "./types.js";

export const stopPodSandbox: Handler<{ pod_sandbox_id: string }> = async (rt, req) => {
  await rt.sandboxes.stop(req.pod_sandbox_id);
  return {};
};
