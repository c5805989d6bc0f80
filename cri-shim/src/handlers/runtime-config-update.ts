// The kubelet pushes the node's pod CIDR here; the CNI config decides our subnet, so it is only logged.
import { logger } from "../../../lib/log.js";
import type { Handler } from "./types.js";

const log = logger("cri-shim");
export const updateRuntimeConfig: Handler<{
  runtime_config: { network_config: { pod_cidr: string } | null } | null;
}> = async (_rt, req) => {
  log.info("pod CIDR from kubelet (the CNI config's subnet is used)", {
    podCIDR: req.runtime_config?.network_config?.pod_cidr ?? "",
  });
  return {};
};
