import type { Handler } from "./types.js";

export const containerStats: Handler<{ container_id: string }> = async (rt, req) => ({
  stats: await rt.stats.container(rt.containers.mustGet(req.container_id)),
});
