import type { ContainerState } from "../proto.js";
import { containerView } from "./views.js";
import type { ContainerEntry } from "../services/containers.js";
import type { Handler } from "./types.js";
import { EncodedList } from "../dispatch/wire.js";

type Filter = {
  id: string;
  pod_sandbox_id: string;
  state: { state: ContainerState } | null;
  label_selector: Record<string, string>;
} | null;
// Encoded per entry and remembered (dispatch/wire.ts, EncodedList): the kubelet lists every second.
export const listContainers: Handler<{ filter: Filter }, EncodedList<ContainerEntry>> = async (rt, req) =>
  new EncodedList("containers", rt.containers.list(req.filter), containerView);
