// core/v1 Events on the objects the operator acts on, so `kubectl describe uvm` tells what happened.
// Recording is best effort: a failed event never fails a reconcile.
import { hostname } from "node:os";
import { logger } from "../../lib/log.js";
import { FIELD_MANAGER, type ObjectMeta } from "../../api/index.js";
import { type KubeClient, paths } from "../../lib/kube/client.js";

const log = logger("events");

export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
}

export class EventRecorder {
  private readonly instance = hostname();
  constructor(private readonly client: KubeClient) {}

  record(target: EventTarget, type: "Normal" | "Warning", reason: string, message: string): void {
    const ns = target.metadata.namespace!;
    const now = new Date().toISOString();
    const body = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { generateName: `${target.metadata.name}.`, namespace: ns },
      involvedObject: {
        apiVersion: target.apiVersion,
        kind: target.kind,
        name: target.metadata.name,
        namespace: ns,
        uid: target.metadata.uid,
      },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: FIELD_MANAGER },
      reportingComponent: FIELD_MANAGER,
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    this.client.request({ method: "POST", path: paths.events(ns), body }).catch((err: unknown) => {
      log.warn("could not record event", {
        reason,
        object: `${ns}/${target.metadata.name}`,
        error: err instanceof Error ? err.message : String(err),
      });
    });
  }
}
