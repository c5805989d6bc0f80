import type { Handler } from "./types.js";

/** timeout: seconds the guest gets to power off before its domain is destroyed. */
export const stopContainer: Handler<{ container_id: string; timeout: string }> = async (rt, req) => {
  const timeout = Number(req.timeout);
  await rt.containers.stop(
    req.container_id,
    Number.isFinite(timeout) && timeout > 0 ? Math.min(timeout, 3600) : 0,
  );
  return {};
};
