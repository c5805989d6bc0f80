// Each emulated node's pod subnet: one block per node index, carved from 10.244.0.0 upwards. A /21
// (2,046 addresses) by default, so a node has room for its kubelet's maxPods of 1,024 and more;
// the blocks of all nodes stay inside 10.240.0.0/12 (POD_NETWORK, kube-proxy's clusterCIDR).
export const DEFAULT_POD_PREFIX_LENGTH = 21;
export const POD_NETWORK = "10.240.0.0/12";
const BASE = (10 << 24) | (244 << 16);
const END = ((10 << 24) | (255 << 16) | (255 << 8) | 255) >>> 0;

export interface PodNetwork {
  /** e.g. 10.244.8.0/21 */
  cidr: string;
  /** dom0's address on the pod bridge, the pods' gateway: the subnet's first address. */
  gateway: string;
  prefixLength: number;
}

const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
const parse = (ip: string) => ip.split(".").reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);

export function podNetwork(index: number, prefixLength = DEFAULT_POD_PREFIX_LENGTH): PodNetwork {
  if (!Number.isInteger(prefixLength) || prefixLength < 16 || prefixLength > 24)
    throw new Error(`pod subnet prefix length must be 16..24, got ${prefixLength}`);
  const size = 2 ** (32 - prefixLength);
  const start = (BASE >>> 0) + index * size;
  if (start + size - 1 > END)
    throw new Error(`node index ${index} has no /${prefixLength} pod subnet left below 10.255.255.255`);
  return { cidr: `${dotted(start)}/${prefixLength}`, gateway: dotted(start + 1), prefixLength };
}

/** Whether `ip` lies in `cidr` (IPv4). */
export function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split("/");
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return (parse(ip) & mask) >>> 0 === (parse(net!) & mask) >>> 0;
}

/** The n-th address of `cidr` (IPv4), e.g. addressAt("10.244.8.0/21", 10) = "10.244.8.10". */
export function addressAt(cidr: string, n: number): string {
  const [net, bits] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  if (!Number.isInteger(n) || n < 1 || n >= size - 1) throw new Error(`no host address ${n} in ${cidr}`);
  return dotted((parse(net!) + n) >>> 0);
}
