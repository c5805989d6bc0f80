// The UnikernelVM API: one source for the TypeScript types and the CRD's schema.
import type { V1Affinity } from "@kubernetes/client-node";
import { describe, type Infer, required, s, withRules } from "../schema-builder.js";
import { CMDLINE_FORBIDDEN_RE2, RESERVED_CMDLINE_KEYS, RESERVED_KEY_RE2 } from "../cmdline.js";
import {
  API_VERSION,
  conditionsSchema,
  DNS_1035_LABEL,
  DNS_LABEL,
  DNS_SUBDOMAIN,
  type ObjectMeta,
} from "./common.js";

export const UNIKERNELVM_KIND = "UnikernelVM";
export const UNIKERNELVM_PLURAL = "unikernelvms";

export const RUN_POLICIES = ["Running", "Paused", "Suspended", "Stopped"] as const;
export type RunPolicy = (typeof RUN_POLICIES)[number];
export const GUEST_TYPES = ["pv", "pvh"] as const;
export type GuestType = (typeof GUEST_TYPES)[number];
export const HYPERVISORS = ["xen"] as const;
export const RESTART_POLICIES = ["Always", "OnFailure", "Never"] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];
export const VM_PHASES = [
  "Pending",
  "Scheduled",
  "Creating",
  "Running",
  "Paused",
  "Suspended",
  "Migrating",
  "Stopped",
  "Succeeded",
  "Failed",
] as const;
export type VMPhase = (typeof VM_PHASES)[number];

/**
 * An OCI image reference: [registry[:port]/]path[:tag][@digest]. The same grammar as
 * distribution/reference, restated as one regular expression (lowercase path components).
 */
export const IMAGE_REFERENCE_PATTERN =
  "^((([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\\[[0-9a-fA-F:]+\\])(:[0-9]+)?/)?[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*(:[\\w][\\w.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$";

const MIN_MEMORY = "4Mi";
const MAX_MEMORY = "64Gi";

/** CEL: the string `self` holds none of the characters that would split or quote a command-line word. */
const ONE_WORD = `!self.matches(r"""${CMDLINE_FORBIDDEN_RE2}""")`;
const ONE_WORD_MESSAGE = "must be one word: no white space, quotes, backslashes or control characters";
const RESERVED_LIST = RESERVED_CMDLINE_KEYS.map((k) => `${k}=`).join(", ");

const argSchema = withRules(
  s.string({ minLength: 1, maxLength: 1024 }),
  { rule: ONE_WORD, message: `each of args ${ONE_WORD_MESSAGE}` },
  {
    rule: `!self.matches(r"""${RESERVED_KEY_RE2}""")`,
    message: `args must not set ${RESERVED_LIST}: the shim sets them itself`,
  },
);

const envVarSchema = s.object({
  name: required(
    withRules(s.string({ minLength: 1, maxLength: 253, pattern: "^[-._a-zA-Z][-._a-zA-Z0-9]*$" }), {
      rule: `!(self in [${RESERVED_CMDLINE_KEYS.map((k) => `'${k}'`).join(", ")}])`,
      message: `env name must not be one of ${RESERVED_CMDLINE_KEYS.join(", ")}: the shim sets them itself`,
    }),
  ),
  value: withRules(s.string({ maxLength: 1024 }), {
    rule: ONE_WORD,
    message: `env value ${ONE_WORD_MESSAGE}`,
  }),
});

const portSchema = s.object({
  name: withRules(s.string({ maxLength: 15, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }), {
    // An IANA service name, as a Pod's and a Service's port names must be.
    rule: "self.matches('[a-z]') && !self.contains('--')",
    message: "port name must contain a letter and no '--' (an IANA service name)",
  }),
  containerPort: required(s.integer({ minimum: 1, maximum: 65535 })),
  protocol: s.enum(["TCP", "UDP", "SCTP"] as const, { default: "TCP" }),
});

const tolerationSchema = s.object({
  key: s.string(),
  operator: s.enum(["Exists", "Equal"] as const),
  value: s.string(),
  effect: s.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"] as const),
  tolerationSeconds: s.integer(),
});

const serviceSchema = s.object({
  type: s.enum(["ClusterIP", "NodePort", "LoadBalancer"] as const, { default: "ClusterIP" }),
  /** Defaults to the VM's name. A Service's name is a DNS-1035 label: it starts with a letter. */
  name: s.string({ maxLength: 63, pattern: DNS_1035_LABEL }),
});

export const unikernelVMSpecSchema = withRules(
  s.object({
    image: required(
      describe(
        s.string({ minLength: 1, maxLength: 512, pattern: IMAGE_REFERENCE_PATTERN }),
        "OCI reference of the unikernel image.",
      ),
    ),
    imagePullSecrets: s.listMap(
      s.object({ name: required(s.string({ minLength: 1, maxLength: 253 })) }),
      ["name"],
      { maxItems: 16 },
    ),
    args: describe(
      s.array(argSchema, { maxItems: 128 }),
      `Kernel command line arguments, appended to the image's defaults; each reaches the guest verbatim as one word (no white space, quotes or control characters, and not ${RESERVED_LIST}).`,
    ),
    env: describe(
      s.listMap(envVarSchema, ["name"], { maxItems: 128 }),
      "Passed to the guest as KEY=VALUE on its command line, each as one word.",
    ),
    memory: withRules(
      describe(s.quantity(), "Guest memory; defaults to the image's, or 16Mi."),
      { rule: `quantity(string(self)).isGreaterThan(quantity('0'))`, message: "memory must be positive" },
      {
        rule: `quantity(string(self)).compareTo(quantity('${MIN_MEMORY}')) >= 0`,
        message: `memory must be at least ${MIN_MEMORY}`,
      },
      {
        rule: `quantity(string(self)).compareTo(quantity('${MAX_MEMORY}')) <= 0`,
        message: `memory must be at most ${MAX_MEMORY}`,
      },
    ),
    vcpus: describe(
      s.integer({ minimum: 1, maximum: 64, default: 1 }),
      "The guest's vCPU count, and the most CPU it can use.",
    ),
    cpuRequest: withRules(
      describe(
        s.quantity(),
        "CPU the VM's pod requests from the node's scheduler (a share of a CPU, e.g. 50m); defaults to vcpus divided by the operator's CPU allocation ratio.",
      ),
      { rule: `quantity(string(self)).isGreaterThan(quantity('0'))`, message: "cpuRequest must be positive" },
      {
        rule: `quantity(string(self)).compareTo(quantity('64')) <= 0`,
        message: "cpuRequest must be at most 64",
      },
    ),
    hypervisor: s.enum(HYPERVISORS, { default: "xen" }),
    guestType: s.enum(GUEST_TYPES, { default: "pv" }),
    runPolicy: s.enum(RUN_POLICIES, { default: "Running" }),
    restartPolicy: s.enum(RESTART_POLICIES, { default: "Always" }),
    ports: s.listMap(portSchema, ["containerPort", "protocol"], { maxItems: 64 }),
    service: describe(
      serviceSchema,
      "A Service whose address stays the same across restarts and migrations.",
    ),
    nodeSelector: s.stringMap({ maxProperties: 32 }),
    affinity: s.opaque<V1Affinity>(),
    tolerations: s.array(tolerationSchema, { maxItems: 32, "x-kubernetes-list-type": "atomic" }),
  }),
  {
    rule: "!has(self.service) || (has(self.ports) && size(self.ports) > 0)",
    message: "service needs at least one entry in ports",
    fieldPath: ".service",
  },
  {
    rule: "!has(self.guestType) || self.guestType != 'pvh' || !has(self.memory) || quantity(string(self.memory)).compareTo(quantity('8Mi')) >= 0",
    message: "pvh guests need at least 8Mi of memory",
    fieldPath: ".memory",
  },
);
export type UnikernelVMSpec = Infer<typeof unikernelVMSpecSchema>;

/**
 * The VM's name becomes its pods' names, the value of their superfluid.dev/vm label and the
 * superfluid.dev/vm annotation (namespace/name): a name that cannot be all of these (a DNS-1123
 * label) is refused here rather than left with no pod. Unless spec.service.name says otherwise it
 * also names the VM's Service, which needs a leading letter: only a CEL rule on the whole object
 * could see the name beside spec.service, and such a rule costs every create about an eighth of its
 * apiserver CPU (bench:crd-cost), so that case is the operator's InvalidSpec (desiredService).
 */
export const unikernelVMNameSchema = s.string({ maxLength: 63, pattern: DNS_LABEL }).schema;

export const lastMigrationSchema = s.object({
  name: required(s.string()),
  sourceNode: s.string(),
  targetNode: s.string(),
  phase: s.string(),
  completionTime: s.string({ format: "date-time" }),
  downtimeMilliseconds: s.integer({ minimum: 0 }),
});

/** The domain's state as the node agent observes it (status.domainState, the agent's to write). */
export const DOMAIN_STATES = ["running", "paused", "suspended"] as const;
export type DomainState = (typeof DOMAIN_STATES)[number];

/**
 * The status fields the node agent of the VM's node writes (server-side apply under
 * nodeAgentFieldManager(node), with its Paused and Suspended conditions); the operator writes the rest.
 * They are on the VM, not on its pod: every pod write costs the kubelet a pass over all its pods.
 */
export const AGENT_STATUS_FIELDS = ["domainId", "domainState"] as const;

export const unikernelVMStatusSchema = s.object({
  phase: s.enum(VM_PHASES),
  nodeName: s.string({ pattern: DNS_SUBDOMAIN }),
  podName: s.string(),
  /** The Xen domain id of the VM's domain on its node (node agent). */
  domainId: s.integer({ minimum: 0 }),
  /** The domain's state on its node (node agent); absent when the agent sees no domain of the VM. */
  domainState: s.enum(DOMAIN_STATES),
  ip: s.string(),
  bootTimeMilliseconds: s.integer({ minimum: 0 }),
  restartCount: s.integer({ minimum: 0 }),
  observedGeneration: s.integer({ minimum: 0 }),
  conditions: conditionsSchema,
  lastMigration: lastMigrationSchema,
});
export type UnikernelVMStatus = Infer<typeof unikernelVMStatusSchema>;

export interface UnikernelVM {
  apiVersion: typeof API_VERSION;
  kind: typeof UNIKERNELVM_KIND;
  metadata: ObjectMeta;
  spec: UnikernelVMSpec;
  status?: UnikernelVMStatus;
}

export const CONDITION_TYPES = ["Ready", "Scheduled", "Paused", "Suspended", "Migrating"] as const;
export type VMConditionType = (typeof CONDITION_TYPES)[number];
