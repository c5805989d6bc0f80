// The source of a migration streams a VM's memory to status.targetEndpoint. Anyone who can write that
// field (a compromised target agent, a stale or forged status) could otherwise have the source send
// the guest's memory to any host: the source sends only to an address of the target Node itself.

export interface NodeAddresses {
  status?: { addresses?: { type: string; address: string }[] };
}

/** host and port of "host:port" or "[v6]:port", or undefined when it is neither. */
export function splitEndpoint(endpoint: string): { host: string; port: number } | undefined {
  const m =
    /^\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})$/.exec(endpoint) ?? /^([^:[\]\s]+):([0-9]{1,5})$/.exec(endpoint);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.toLowerCase(), port };
}

/**
 * Why the source must not send to `endpoint` for a migration to `targetNode`, or undefined when the
 * endpoint's host is one of the Node's InternalIP or ExternalIP addresses (a Hostname address is a
 * name anyone's DNS may answer for, so it does not count).
 */
export function endpointProblem(
  endpoint: string,
  targetNode: string | undefined,
  node: NodeAddresses | undefined,
): string | undefined {
  const ep = splitEndpoint(endpoint);
  if (!ep) return `target endpoint ${JSON.stringify(endpoint.slice(0, 100))} is not host:port`;
  if (!targetNode) return "the migration names no target node";
  if (!node) return `target node ${targetNode} does not exist`;
  const addresses = (node.status?.addresses ?? [])
    .filter((a) => a.type === "InternalIP" || a.type === "ExternalIP")
    .map((a) => a.address.toLowerCase());
  if (!addresses.includes(ep.host))
    return `target endpoint ${endpoint} is not an address of node ${targetNode} (${addresses.join(", ") || "none"})`;
  return undefined;
}
