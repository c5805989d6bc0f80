import type { Handler } from "./types.js";

export const startContainer: Handler<{ container_id: string }> = async (rt, req) => {
  await rt.containers.start(req.container_id);
  return {};
};
