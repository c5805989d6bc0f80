import type { Handler } from "./types.js";

export const removeContainer: Handler<{ container_id: string }> = async (rt, req) => {
  await rt.containers.remove(req.container_id);
  rt.stats.forget(req.container_id);
  return {};
};
