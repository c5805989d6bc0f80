import test from "ava";
import type { V1Node } from "@kubernetes/client-node";
import { API_VERSION, LABELS, type UnikernelVM, type UnikernelVMMigration } from "../../api/index.js";
import { judgeMigration } from "./migration-controller.js";

const migration = (targetNode?: string): UnikernelVMMigration => ({
  apiVersion: API_VERSION,
  kind: "UnikernelVMMigration",
  metadata: { name: "m", namespace: "apps", generation: 1 },
  spec: { vmName: "web", ...(targetNode ? { targetNode } : {}) },
});
const vm: UnikernelVM = {
  apiVersion: API_VERSION,
  kind: "UnikernelVM",
  metadata: { name: "web", namespace: "apps" },
  spec: { image: "r/web:1" },
  status: { nodeName: "xen-a", phase: "Running" },
};
const node = (name: string, xen: boolean) =>
  ({ metadata: { name, labels: xen ? { [LABELS.xenNode]: "true" } : {} } }) as V1Node;

const cases: [string, UnikernelVMMigration, UnikernelVM | undefined, V1Node | undefined, string, string][] = [
  ["no such VM", migration(), undefined, undefined, "Failed", "VMNotFound"],
  ["no such node", migration("xen-b"), vm, undefined, "Failed", "TargetNodeNotFound"],
  ["not a Xen node", migration("plain"), vm, node("plain", false), "Failed", "TargetNotXenNode"],
  ["the node it is on", migration("xen-a"), vm, node("xen-a", true), "Failed", "SameNode"],
  ["a valid request", migration("xen-b"), vm, node("xen-b", true), "Pending", "NotYetSupported"],
  ["a valid request without a target", migration(), vm, undefined, "Pending", "NotYetSupported"],
];
for (const [name, m, v, n, phase, reason] of cases) {
  test(`migration: ${name} is ${phase}/${reason}`, (t) => {
    const verdict = judgeMigration(m, v, n);
    t.deepEqual([verdict.phase, verdict.reason], [phase, reason]);
    t.true(verdict.message.length > 0);
  });
}
