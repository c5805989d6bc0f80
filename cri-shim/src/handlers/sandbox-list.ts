import type { PodSandboxState } from "../proto.js";
import { sandboxView } from "./views.js";
import type { Handler } from "./types.js";

type Filter = {
  id: string;
  state: { state: PodSandboxState } | null;
  label_selector: Record<string, string>;
} | null;
export const listPodSandbox: Handler<{ filter: Filter }> = async (rt, req) => ({
  items: rt.sandboxes.list(req.filter).map(sandboxView),
});
