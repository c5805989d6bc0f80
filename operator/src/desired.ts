// The children a UnikernelVM should have, as pure functions of its spec: no I/O, no clock, so that
// the same VM always yields the same objects (and the same pod name, which is what keeps a restarted
// operator from creating a second pod for a VM).
import { createHash } from "node:crypto";
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  API_VERSION,
  AnnotationError,
  DNS_1035_LABEL,
  FIELD_MANAGER,
  LABELS,
  parseQuantity,
  parseSandboxAnnotations,
  RESOURCES,
  RUNTIME_CLASS,
  UNIKERNELVM_KIND,
  type UnikernelVM,
} from "../../api/index.js";
import { TerminalError } from "../../lib/kube/queue.js";

/** Guest memory when neither the VM nor its image says (the CRD's documented default). */
export const DEFAULT_MEMORY_MIB = 16;
export const CONTAINER_NAME = "unikernel";
const DNS_1035 = new RegExp(DNS_1035_LABEL);

/**
 * How a VM's pod asks the scheduler for room. A guest's memory lives in Xen, outside dom0: the pod
 * requests it as the node's guest-memory resource (RESOURCES.guestMemoryMiB, published by the node
 * agent), and requests no dom0 memory of its own (the RuntimeClass overhead adds the measured dom0
 * cost per VM). Its memory limit carries the same figure so that the CRI shim sees it and refuses a
 * pod whose figures disagree. Its CPU request is a share of a CPU: vcpus / cpuAllocationRatio, or
 * spec.cpuRequest; no CPU limit (vcpus is the guest's cap, in Xen).
 */
export interface ResourceModel {
  /** Guest vCPUs per CPU of the node the scheduler counts (compare KubeVirt's cpuAllocationRatio). */
  cpuAllocationRatio: number;
}

export const DEFAULT_CPU_ALLOCATION_RATIO = 100;
export const DEFAULT_RESOURCE_MODEL: ResourceModel = { cpuAllocationRatio: DEFAULT_CPU_ALLOCATION_RATIO };

/** What the operator knows about the VM's image (its default guest memory, read from the image). */
export interface ImageFacts {
  memoryMiB?: number;
}

/** The one guest-memory figure: the spec's, else the image's, else the default. */
export function guestMemoryMiB(vm: UnikernelVM, image: ImageFacts = {}): number {
  return memoryMiB(vm) ?? image.memoryMiB ?? DEFAULT_MEMORY_MIB;
}

/** Millicores the pod requests: spec.cpuRequest, else vcpus / ratio; never below 1m. */
export function cpuRequestMillis(vm: UnikernelVM, model: ResourceModel): number {
  if (vm.spec.cpuRequest !== undefined)
    return Math.max(1, Math.ceil(quantityToBytes(vm.spec.cpuRequest) * 1000));
  if (!(model.cpuAllocationRatio > 0))
    throw new Error(`cpuAllocationRatio must be positive, got ${model.cpuAllocationRatio}`);
  return Math.max(1, Math.ceil(((vm.spec.vcpus ?? 1) * 1000) / model.cpuAllocationRatio));
}

export interface PodResources {
  requests: Record<string, string>;
  limits: Record<string, string>;
}

export function podResources(vm: UnikernelVM, model: ResourceModel, image: ImageFacts = {}): PodResources {
  const mib = guestMemoryMiB(vm, image);
  return {
    // memory "0": without it the API would default the request to the limit, and count the guest
    // against dom0's memory again.
    requests: {
      cpu: `${cpuRequestMillis(vm, model)}m`,
      memory: "0",
      [RESOURCES.guestMemoryMiB]: String(mib),
    },
    limits: { memory: `${mib}Mi`, [RESOURCES.guestMemoryMiB]: String(mib) },
  };
}

/** A spec the schema accepts but no pod can be made from: reported as a condition, never retried. */
export class InvalidSpecError extends TerminalError {
  constructor(message: string) {
    super(message);
    this.name = "InvalidSpecError";
  }
}

/** Bytes in a resource.Quantity ("64Mi", "100M", "1e9", 1048576). */
export function quantityToBytes(q: string | number): number {
  const v = parseQuantity(q);
  if (v === undefined) throw new InvalidSpecError(`memory ${JSON.stringify(q)} is not a quantity`);
  return v;
}

/** Guest memory in whole MiB, rounded up (Xen allocates in pages; we never give less than asked). */
export function memoryMiB(vm: UnikernelVM): number | undefined {
  if (vm.spec.memory === undefined) return undefined;
  return Math.ceil(quantityToBytes(vm.spec.memory) / 2 ** 20);
}

/** JSON with sorted keys, so that a hash does not depend on the order the apiserver returned fields in. */
export function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableStringify(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

export function ownerReference(vm: UnikernelVM) {
  return {
    apiVersion: API_VERSION,
    kind: UNIKERNELVM_KIND,
    name: vm.metadata.name!,
    uid: vm.metadata.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function childLabels(vm: UnikernelVM): Record<string, string> {
  return { [LABELS.vm]: vm.metadata.name!, [LABELS.managedBy]: FIELD_MANAGER };
}

/** The annotations the shim reads; every key comes from api/annotations.ts. */
function domainAnnotations(vm: UnikernelVM): Record<string, string> {
  const a: Record<string, string> = { [ANNOTATIONS.vm]: `${vm.metadata.namespace}/${vm.metadata.name}` };
  const spec = vm.spec;
  if (spec.args?.length) a[ANNOTATIONS.args] = JSON.stringify(spec.args);
  if (spec.env?.length)
    a[ANNOTATIONS.env] = JSON.stringify(Object.fromEntries(spec.env.map((e) => [e.name, e.value ?? ""])));
  const mib = memoryMiB(vm);
  if (mib !== undefined) a[ANNOTATIONS.memoryMiB] = String(mib);
  a[ANNOTATIONS.vcpus] = String(spec.vcpus ?? 1);
  a[ANNOTATIONS.guestType] = spec.guestType ?? "pv";
  return a;
}

/**
 * Hashes by spec object: a reconcile asks several times, and the cache's objects are never changed
 * in place (an update is a new object), so one spec object has one hash for its name.
 */
const hashes = new WeakMap<object, { key: string; hash: string }>();

/** Everything that shapes the domain. runPolicy is left out: pausing or suspending a domain keeps it. */
export function domainHash(vm: UnikernelVM): string {
  const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
  const known = hashes.get(vm.spec);
  if (known?.key === key) return known.hash;
  const hash = computeDomainHash(vm);
  hashes.set(vm.spec, { key, hash });
  return hash;
}

function computeDomainHash(vm: UnikernelVM): string {
  const spec = vm.spec;
  const input = {
    annotations: domainAnnotations(vm),
    image: spec.image,
    imagePullSecrets: spec.imagePullSecrets?.length ? spec.imagePullSecrets : undefined,
    ports: spec.ports?.length ? spec.ports : undefined,
    restartPolicy: spec.restartPolicy ?? "Always",
    cpuRequest: spec.cpuRequest,
    nodeSelector: spec.nodeSelector,
    affinity: spec.affinity,
    tolerations: spec.tolerations?.length ? spec.tolerations : undefined,
  };
  return createHash("sha256").update(stableStringify(input)).digest("hex").slice(0, 10);
}

/** The pod's name: the VM's and the domain hash, so that a changed spec gets a new pod and a restarted operator the same one. */
export function podName(vm: UnikernelVM): string {
  return `${vm.metadata.name}-${domainHash(vm)}`;
}

/**
 * The pod that runs the VM, or undefined when runPolicy is Stopped. Throws InvalidSpecError. The
 * memory annotation always carries the one figure (podResources uses the same), so the shim's
 * reservation and the domain never fall back to a default of their own.
 */
export function desiredPod(
  vm: UnikernelVM,
  model: ResourceModel = DEFAULT_RESOURCE_MODEL,
  image: ImageFacts = {},
): V1Pod | undefined {
  const spec = vm.spec;
  if ((spec.runPolicy ?? "Running") === "Stopped") return undefined;
  const annotations: Record<string, string> = {
    ...domainAnnotations(vm),
    // Outside the domain hash (a uid never changes): the node binds the sandbox to this VM by
    // namespace, name and uid, so a VM made again under the same name is not the old pod's VM.
    ...(vm.metadata.uid ? { [ANNOTATIONS.vmUid]: vm.metadata.uid } : {}),
    [ANNOTATIONS.memoryMiB]: String(guestMemoryMiB(vm, image)),
    [ANNOTATIONS.runPolicy]: spec.runPolicy ?? "Running",
    [ANNOTATIONS.domainHash]: domainHash(vm),
  };
  // The shim parses these at the node; refusing here what it would refuse there turns a pod that
  // would fail on the node into a clear condition on the VM.
  try {
    parseSandboxAnnotations(annotations);
  } catch (err) {
    if (err instanceof AnnotationError) throw new InvalidSpecError(err.message);
    throw err;
  }
  let resources: PodResources;
  try {
    resources = podResources(vm, model, image);
  } catch (err) {
    if (err instanceof InvalidSpecError) throw err;
    throw new InvalidSpecError(err instanceof Error ? err.message : String(err));
  }
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName(vm),
      namespace: vm.metadata.namespace!,
      labels: childLabels(vm),
      annotations,
      ownerReferences: [ownerReference(vm)],
    },
    spec: {
      runtimeClassName: RUNTIME_CLASS,
      restartPolicy: spec.restartPolicy ?? "Always",
      // The Xen label wins over the VM's own selector: a unikernel cannot run anywhere else.
      nodeSelector: { ...(spec.nodeSelector ?? {}), [LABELS.xenNode]: "true" },
      ...(spec.tolerations?.length ? { tolerations: spec.tolerations } : {}),
      ...(spec.affinity ? { affinity: spec.affinity } : {}),
      ...(spec.imagePullSecrets?.length ? { imagePullSecrets: spec.imagePullSecrets } : {}),
      // A unikernel has no use for a service account token or service environment variables.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // Nor for the pod's DNS settings: the shim hands none to the guest. ClusterFirst on a node
      // without cluster DNS makes the kubelet record a MissingClusterDNS warning at every sync of
      // every pod (10 Event writes a second at 650 VMs on one node).
      dnsPolicy: "Default",
      containers: [
        {
          name: CONTAINER_NAME,
          image: spec.image,
          resources,
          ...(spec.ports?.length
            ? {
                ports: spec.ports.map((p) => ({
                  containerPort: p.containerPort,
                  protocol: p.protocol ?? "TCP",
                  ...(p.name ? { name: p.name } : {}),
                })),
              }
            : {}),
        },
      ],
    },
  };
}

/** The Service in front of the VM, or undefined when the spec asks for none. */
export function desiredService(vm: UnikernelVM): V1Service | undefined {
  const svc = vm.spec.service;
  if (!svc) return undefined;
  const ports = vm.spec.ports ?? [];
  if (ports.length === 0) throw new InvalidSpecError("service needs at least one entry in ports");
  const name = svc.name ?? vm.metadata.name!;
  // The CRD's schema has the VM's name a DNS-1123 label; a Service's name must also start with a letter.
  if (svc.name === undefined && !DNS_1035.test(name))
    throw new InvalidSpecError(
      `metadata.name ${JSON.stringify(name)} must start with a letter when spec.service.name is not set: the Service takes the VM's name`,
    );
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name,
      namespace: vm.metadata.namespace!,
      labels: childLabels(vm),
      ownerReferences: [ownerReference(vm)],
    },
    spec: {
      type: svc.type ?? "ClusterIP",
      // Only the VM label: it stays the same across pod recreations and migrations.
      selector: { [LABELS.vm]: vm.metadata.name! },
      ports: ports.map((p) => {
        const protocol = p.protocol ?? "TCP";
        return {
          name: p.name ?? `${protocol.toLowerCase()}-${p.containerPort}`,
          port: p.containerPort,
          targetPort: p.containerPort,
          protocol,
        };
      }),
    },
  };
}
