import { type Infer, required, s } from "../schema-builder.js";

export const GROUP = "superfluid.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** metav1.Condition, as every Kubernetes API writes it. */
export const conditionSchema = s.object({
  type: required(
    s.string({
      maxLength: 316,
      pattern:
        "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    }),
  ),
  status: required(s.enum(["True", "False", "Unknown"] as const)),
  reason: required(
    s.string({ minLength: 1, maxLength: 1024, pattern: "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$" }),
  ),
  message: required(s.string({ maxLength: 32768 })),
  lastTransitionTime: required(s.string({ format: "date-time" })),
  observedGeneration: s.integer({ minimum: 0 }),
});
export type Condition = Infer<typeof conditionSchema>;

export const conditionsSchema = s.listMap(conditionSchema, ["type"], { maxItems: 16 });

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: {
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
    blockOwnerDeletion?: boolean;
  }[];
}

/** A DNS-1123 label, as Kubernetes names nodes and VMs. */
export const DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/** A DNS-1035 label, as Kubernetes names Services: a DNS-1123 label that starts with a letter. */
export const DNS_1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/** A DNS-1123 subdomain (node names may contain dots). */
export const DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
