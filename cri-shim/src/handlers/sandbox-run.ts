import type { PodSandboxConfig } from "../proto.js";
import type { Handler } from "./types.js";

export const runPodSandbox: Handler<{ config: PodSandboxConfig | null; runtime_handler: string }> = async (
  rt,
  req,
) => ({
  pod_sandbox_id: await rt.sandboxes.run(req.config, req.runtime_handler),
});
