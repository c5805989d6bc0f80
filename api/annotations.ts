// Every key the operator writes on a Pod for the shim to read, in one place, and the one parser that
// turns a sandbox's annotations into a typed config at the node's edge.
import { cmdlineWordProblem, envNameProblem, envValueProblem } from "./cmdline.js";
import { GUEST_TYPES, type GuestType, RUN_POLICIES, type RunPolicy } from "./v1alpha1/unikernelvm.js";

const P = "superfluid.dev/";

export const ANNOTATIONS = {
  /** Namespace/name of the UnikernelVM the pod runs. */
  vm: `${P}vm`,
  /** The uid of that UnikernelVM: a VM deleted and made again under its name is another VM. */
  vmUid: `${P}vm-uid`,
  /** Kernel command line (JSON array of strings), after the image's defaults. */
  args: `${P}args`,
  /** Environment for the guest (JSON object), passed as KEY=VALUE on the command line. */
  env: `${P}env`,
  /** Guest memory in MiB. */
  memoryMiB: `${P}memory-mib`,
  vcpus: `${P}vcpus`,
  guestType: `${P}guest-type`,
  /** The runPolicy the domain starts in (a VM created Paused is built but not unpaused). */
  runPolicy: `${P}run-policy`,
  /** Set on a migration's target pod: the migration it receives. */
  migrationTarget: `${P}migration-target`,
  /** Milliseconds from RunPodSandbox to the guest's ready line (read by the operator; no writer yet). */
  bootTimeMs: `${P}boot-time-ms`,
  /** Set by the operator: hash of everything that shapes the domain; a change means a new pod. */
  domainHash: `${P}domain-hash`,
} as const;

export const LABELS = {
  vm: `${P}vm`,
  managedBy: "app.kubernetes.io/managed-by",
  /** Nodes that run Xen and the shim carry this label set to "true". */
  xenNode: `${P}xen`,
  migration: `${P}migration`,
} as const;

/**
 * Extended resources on Xen nodes. guestMemoryMiB: the memory Xen can give guests, in MiB, published
 * by each node's agent on its Node (capacity and allocatable) and requested by every VM pod, so the
 * scheduler counts guest memory against the Xen host, not against dom0's memory.
 */
export const RESOURCES = {
  guestMemoryMiB: `${P}guest-memory-mib`,
} as const;

export const RUNTIME_CLASS = "superfluid";
export const FINALIZER = `${P}cleanup`;
/**
 * On an in-flight UnikernelVMMigration: a deletion before the stream starts cancels it (Failed,
 * reason Cancelled); once the stream runs, deletion waits for it to succeed or fail, so that the
 * garbage collector never takes the target pod that may by then hold the only copy of the domain.
 */
export const MIGRATION_FINALIZER = `${P}migration-protection`;
export const FIELD_MANAGER = "superfluid-operator";

export interface SandboxConfig {
  vm?: { namespace: string; name: string; uid?: string };
  args: string[];
  env: Record<string, string>;
  /** Undefined when the pod does not say: the image's default applies. */
  memoryMiB?: number;
  vcpus?: number;
  guestType?: GuestType;
  runPolicy: RunPolicy;
  migrationTarget?: string;
}

export class AnnotationError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`annotation ${key}: ${message}`);
    this.name = "AnnotationError";
  }
}

function parseJSON(key: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw new AnnotationError(key, `not valid JSON: ${raw.slice(0, 80)}`);
  }
}

function parsePositiveInt(key: string, raw: string, max: number): number {
  if (!/^[0-9]+$/.test(raw))
    throw new AnnotationError(key, `must be a positive integer, got ${JSON.stringify(raw.slice(0, 40))}`);
  const n = Number(raw);
  if (n < 1 || n > max) throw new AnnotationError(key, `must be between 1 and ${max}, got ${n}`);
  return n;
}

const MAX_CMDLINE = 1024; // Xen's MAX_GUEST_CMDLINE

/** Parses the superfluid annotations of a pod sandbox. Unknown superfluid.dev keys are ignored. */
export function parseSandboxAnnotations(annotations: Record<string, string> | undefined): SandboxConfig {
  const a = annotations ?? {};
  const config: SandboxConfig = { args: [], env: {}, runPolicy: "Running" };

  const vm = a[ANNOTATIONS.vm];
  if (vm !== undefined) {
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)$/.exec(vm);
    if (!m)
      throw new AnnotationError(
        ANNOTATIONS.vm,
        `must be <namespace>/<name>, got ${JSON.stringify(vm.slice(0, 80))}`,
      );
    config.vm = { namespace: m[1]!, name: m[3]! };
    const uid = a[ANNOTATIONS.vmUid];
    if (uid !== undefined) {
      if (!/^[0-9A-Za-z-]{1,64}$/.test(uid))
        throw new AnnotationError(
          ANNOTATIONS.vmUid,
          `must be a uid, got ${JSON.stringify(uid.slice(0, 80))}`,
        );
      config.vm.uid = uid;
    }
  }
  const args = a[ANNOTATIONS.args];
  if (args !== undefined) {
    const v = parseJSON(ANNOTATIONS.args, args);
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
      throw new AnnotationError(ANNOTATIONS.args, "must be a JSON array of strings");
    v.forEach((word: string, i) => {
      const problem = cmdlineWordProblem(word);
      if (problem) throw new AnnotationError(ANNOTATIONS.args, `args[${i}] ${problem}`);
    });
    config.args = v;
  }
  const env = a[ANNOTATIONS.env];
  if (env !== undefined) {
    const v = parseJSON(ANNOTATIONS.env, env);
    if (typeof v !== "object" || v === null || Array.isArray(v))
      throw new AnnotationError(ANNOTATIONS.env, "must be a JSON object of strings");
    for (const [k, val] of Object.entries(v)) {
      if (!/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(k))
        throw new AnnotationError(ANNOTATIONS.env, `invalid variable name ${JSON.stringify(k)}`);
      const nameProblem = envNameProblem(k);
      if (nameProblem) throw new AnnotationError(ANNOTATIONS.env, `env name ${k} ${nameProblem}`);
      if (typeof val !== "string")
        throw new AnnotationError(ANNOTATIONS.env, `value of ${k} must be a string`);
      const problem = envValueProblem(val);
      if (problem)
        throw new AnnotationError(
          ANNOTATIONS.env,
          `value of ${k} ${problem} (it travels on the kernel command line)`,
        );
      config.env[k] = val;
    }
  }
  const cmdline = [...config.args, ...Object.entries(config.env).map(([k, v]) => `${k}=${v}`)].join(" ");
  if (cmdline.length > MAX_CMDLINE)
    throw new AnnotationError(
      ANNOTATIONS.args,
      `command line is ${cmdline.length} bytes, Xen allows ${MAX_CMDLINE}`,
    );

  const mem = a[ANNOTATIONS.memoryMiB];
  if (mem !== undefined) config.memoryMiB = parsePositiveInt(ANNOTATIONS.memoryMiB, mem, 64 * 1024);
  const vcpus = a[ANNOTATIONS.vcpus];
  if (vcpus !== undefined) config.vcpus = parsePositiveInt(ANNOTATIONS.vcpus, vcpus, 64);
  const gt = a[ANNOTATIONS.guestType];
  if (gt !== undefined) {
    if (!(GUEST_TYPES as readonly string[]).includes(gt))
      throw new AnnotationError(
        ANNOTATIONS.guestType,
        `must be one of ${GUEST_TYPES.join(", ")}, got ${JSON.stringify(gt.slice(0, 40))}`,
      );
    config.guestType = gt as GuestType;
  }
  const rp = a[ANNOTATIONS.runPolicy];
  if (rp !== undefined) {
    if (!(RUN_POLICIES as readonly string[]).includes(rp))
      throw new AnnotationError(
        ANNOTATIONS.runPolicy,
        `must be one of ${RUN_POLICIES.join(", ")}, got ${JSON.stringify(rp.slice(0, 40))}`,
      );
    config.runPolicy = rp as RunPolicy;
  }
  const mt = a[ANNOTATIONS.migrationTarget];
  if (mt !== undefined) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(mt))
      throw new AnnotationError(ANNOTATIONS.migrationTarget, "must be a migration name");
    config.migrationTarget = mt;
  }
  return config;
}
