// Image references ("registry/repo:tag@sha256:..."), normalised the way Docker and containerd do, so
// the names the kubelet passes match the names the store keeps.
import { OciError } from "./types.js";

export interface ImageReference {
  /** host[:port] as written (docker.io for Docker Hub names). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const DOCKER_HUB = "docker.io";
const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

export function parseReference(raw: string): ImageReference {
  const bad = (why: string): never => {
    throw new OciError("InvalidReference", `image reference ${JSON.stringify(raw.slice(0, 200))}: ${why}`);
  };
  if (raw.length === 0 || raw.length > 1024) bad("must be 1 to 1024 characters");
  let rest = raw;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_PATTERN.test(digest)) bad("digest must be sha256:<64 hex digits>");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`invalid tag ${JSON.stringify(tag)}`);
  }
  let registry = DOCKER_HUB;
  const first = rest.split("/")[0] ?? "";
  // Docker's rule: the first component is a registry host when it has a dot or a port, or is localhost.
  if (rest.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost")) {
    registry = first;
    rest = rest.slice(first.length + 1);
  }
  if (!/^[a-zA-Z0-9.-]+(:[0-9]{1,5})?$/.test(registry) && !/^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$/.test(registry))
    bad(`invalid registry host ${JSON.stringify(registry)}`);
  if (registry === DOCKER_HUB && !rest.includes("/")) rest = `library/${rest}`;
  if (rest === "" || !rest.split("/").every((c) => REPO_COMPONENT.test(c)))
    bad("repository must be lower-case path components [a-z0-9._-]");
  if (tag === undefined && digest === undefined) tag = "latest";
  const ref: ImageReference = { registry, repository: rest };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** "registry/repository" as the store names repositories. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The canonical string of a reference: "registry/repo:tag", "registry/repo@digest" or both. */
export function formatReference(ref: ImageReference): string {
  let s = repositoryName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The host to connect to: Docker Hub's API lives on a different name than its references. */
export function registryEndpointHost(registry: string): string {
  return registry === DOCKER_HUB ? "registry-1.docker.io" : registry;
}
