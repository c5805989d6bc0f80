import { containerStatusView } from "./views.js";
import type { Handler } from "./types.js";

export const containerStatus: Handler<{ container_id: string; verbose: boolean }> = async (rt, req) => {
  const c = rt.containers.mustGet(req.container_id);
  const info: Record<string, string> = {};
  if (req.verbose)
    info.info = JSON.stringify({
      domid: c.status.domid,
      domainName: c.meta.domainName,
      cmdline: c.meta.cmdline,
      kernelPath: c.meta.kernelPath,
    });
  return { status: containerStatusView(c), info };
};
