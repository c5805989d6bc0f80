// RuntimeReady: the hypervisor answers. NetworkReady: the pod bridge and CNI config are usable.
import type { Handler } from "./types.js";

export const status: Handler<{ verbose: boolean }> = async (rt) => {
  const runtime = await rt.runtimeReady();
  const network = rt.ctx.network.status();
  return {
    status: {
      conditions: [
        {
          type: "RuntimeReady",
          status: runtime.ready,
          reason: runtime.ready ? "" : "HypervisorUnavailable",
          message: runtime.message,
        },
        {
          type: "NetworkReady",
          status: network.ready,
          reason: network.ready ? "" : "NetworkPluginNotReady",
          message: network.message,
        },
      ],
    },
    info: {},
    runtime_handlers: [{ name: "" }, ...rt.ctx.options.runtimeHandlers.map((name) => ({ name }))],
  };
};
