import type { Handler } from "./types.js";

export const reopenContainerLog: Handler<{ container_id: string }> = async (rt, req) => {
  await rt.containers.reopenLog(req.container_id);
  return {};
};
