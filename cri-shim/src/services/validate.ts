// Checks on the strings a CRI caller sends, so garbage becomes InvalidArgument at the edge instead of
// a strange failure deep in Xen, a file name or a kernel command line.
import { isAbsolute, normalize } from "node:path";
import { cmdlineWordProblem } from "../../../api/cmdline.js";
import { invalid } from "../errors.js";

const MAX_NAME = 253;

/** A name-like field: non-empty (when required), bounded, no control characters. */
export function checkName(field: string, value: string | undefined, required = true): string {
  const v = value ?? "";
  if (!v) {
    if (required) throw invalid(`${field} is required`);
    return v;
  }
  if (v.length > MAX_NAME) throw invalid(`${field} is ${v.length} characters, at most ${MAX_NAME} allowed`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw invalid(`${field} contains control characters`);
  return v;
}

/** RFC 1123 host name, as it goes on the guest's command line. */
export function checkHostname(value: string): string {
  if (!value) return value;
  if (value.length > 63 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/i.test(value))
    throw invalid(`hostname ${JSON.stringify(value.slice(0, 80))} is not a valid host name`);
  return value;
}

export function checkAbsoluteDir(field: string, value: string): string {
  if (!value) return value;
  checkName(field, value);
  if (!isAbsolute(value) || (normalize(value) !== value.replace(/\/+$/, "") && normalize(value) !== value))
    throw invalid(`${field} must be a normalised absolute path, got ${JSON.stringify(value.slice(0, 120))}`);
  return value;
}

/** The container's log_path: relative to the sandbox's log directory and staying inside it. */
export function checkRelativeLogPath(value: string): string {
  if (!value) return value;
  checkName("log_path", value);
  const n = normalize(value);
  if (isAbsolute(value) || n.startsWith(".."))
    throw invalid(
      `log_path must be relative to the sandbox log directory, got ${JSON.stringify(value.slice(0, 120))}`,
    );
  return n;
}

/**
 * A word that travels on the kernel command line: the same rules as the CRD's for args and env
 * (one word, no quotes or control characters, none of the keys the shim sets itself).
 */
export function checkCmdlineWord(field: string, value: string): string {
  const problem = cmdlineWordProblem(value);
  if (problem)
    throw invalid(
      `${field} ${JSON.stringify(value.slice(0, 80))} cannot go on a kernel command line: ${problem}`,
    );
  return value;
}

export function matchesLabels(
  labels: Record<string, string>,
  selector: Record<string, string> | undefined,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** Kubernetes' own limit on a pod's annotations, all keys and values together. */
const MAX_ANNOTATIONS_BYTES = 256 * 1024;

/**
 * Labels and annotations as the apiserver allows them: names for keys and label values, but any
 * text for annotation values (kubectl apply's last-applied-configuration is a JSON document with a
 * newline), bounded in total; only NUL is refused, since it cannot travel in our JSON records.
 */
export function checkMetadata(
  labels: Record<string, string> | undefined,
  annotations: Record<string, string> | undefined,
): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    checkName("label key", k);
    checkName(`value of label ${k}`, v, false);
  }
  let total = 0;
  for (const [k, v] of Object.entries(annotations ?? {})) {
    checkName("annotation key", k);
    if (v.includes("\0")) throw invalid(`value of annotation ${k} contains a NUL byte`);
    total += k.length + v.length;
  }
  if (total > MAX_ANNOTATIONS_BYTES)
    throw invalid(`annotations are ${total} bytes, at most ${MAX_ANNOTATIONS_BYTES} allowed`);
}

/** What binds a sandbox to a UnikernelVM: the pod's own namespace and the operator's annotations. */
export interface VMSandboxView {
  /** The pod's metadata as the kubelet sent it (not an annotation: a pod cannot lie about its namespace). */
  metadata: { namespace: string };
  config: { vm?: { namespace: string; name: string; uid?: string } };
}

/**
 * Whether this sandbox runs that VM: same namespace (the pod's own, from the kubelet, and the
 * annotation's), same name, and the VM's uid, so that neither a pod in another namespace nor the
 * leftover pod of a deleted VM of the same name can claim it. A sandbox without the uid claims nothing.
 */
export function sandboxRunsVM(
  sb: VMSandboxView,
  vm: { metadata: { namespace?: string; name?: string; uid?: string } },
): boolean {
  const claim = sb.config.vm;
  const { namespace, name, uid } = vm.metadata;
  return (
    !!claim &&
    !!uid &&
    sb.metadata.namespace === namespace &&
    claim.namespace === namespace &&
    claim.name === name &&
    claim.uid === uid
  );
}
