import { nowNs } from "../proto.js";
import { containerStatusView, newestFirst, sandboxStatusView } from "./views.js";
import type { Handler } from "./types.js";

export const podSandboxStatus: Handler<{ pod_sandbox_id: string; verbose: boolean }> = async (rt, req) => {
  const sb = rt.sandboxes.mustGet(req.pod_sandbox_id);
  const info: Record<string, string> = {};
  if (req.verbose)
    info.info = JSON.stringify({
      domainName: sb.meta.domainName,
      reservedMiB: sb.meta.reservedMiB,
      network: sb.status.network,
      config: sb.meta.config,
    });
  const members = rt.containers.list({ id: "", pod_sandbox_id: sb.meta.id, state: null, label_selector: {} });
  return {
    status: sandboxStatusView(sb),
    info,
    containers_statuses: newestFirst(members).map(containerStatusView),
    timestamp: nowNs(),
  };
};
