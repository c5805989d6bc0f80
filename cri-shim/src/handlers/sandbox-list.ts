import type { PodSandboxState } from "../proto.js";
import { sandboxView } from "./views.js";
import type { SandboxEntry } from "../services/sandboxes.js";
import type { Handler } from "./types.js";
import { EncodedList } from "../dispatch/wire.js";

type Filter = {
  id: string;
  state: { state: PodSandboxState } | null;
  label_selector: Record<string, string>;
} | null;
// Encoded per entry and remembered (dispatch/wire.ts, EncodedList): the kubelet lists every second.
export const listPodSandbox: Handler<{ filter: Filter }, EncodedList<SandboxEntry>> = async (rt, req) =>
  new EncodedList("items", rt.sandboxes.list(req.filter), sandboxView);
