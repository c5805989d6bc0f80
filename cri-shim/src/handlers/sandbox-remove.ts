import type { Handler } from "./types.js";

export const removePodSandbox: Handler<{ pod_sandbox_id: string }> = async (rt, req) => {
  await rt.sandboxes.remove(req.pod_sandbox_id);
  return {};
};
