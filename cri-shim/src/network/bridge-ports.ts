// A Linux bridge takes at most 1,023 ports (BR_MAX_PORTS 1,024, port 0 unused): the 1,024th vif
// fails with "Exchange full" (EXFULL). A node with more guests than that spreads them over a chain
// of bridges that are one L2 segment: the pod network's bridge (with dom0's gateway address) and
// overflow bridges, each joined to it by a veth pair. A guest's bridge follows from its address
// (its ordinal in the IPAM ranges), so it is the same after a restart and needs no record of its own;
// host-local hands addresses out in order, so the first bridge fills first.
// The pure half is here (which bridge, the names); cni.ts makes an overflow bridge when it is first
// needed, with netlink.ts.

/** Guests per bridge: below 1,023, so the first bridge also has ports for its uplink NIC and the
 *  veths of every overflow bridge. */
export const GUESTS_PER_BRIDGE = 1000;
/** Overflow bridges a node may make: with GUESTS_PER_BRIDGE, 21,000 guests (the first bridge then
 *  holds 1,000 guests, 20 veths and room for dom0's own ports). */
export const MAX_OVERFLOW_BRIDGES = 20;

export interface OverflowLink {
  /** The overflow bridge. */
  bridge: string;
  /** The veth end on the pod network's bridge. */
  uplink: string;
  /** The veth end on the overflow bridge. */
  downlink: string;
}

/**
 * Which bridge of the chain an address's ordinal (0-based, counting every address of the IPAM
 * ranges in order) goes to: 0 is the pod network's bridge, k > 0 the k-th overflow bridge.
 */
export function bridgeSlot(ordinal: number, perBridge = GUESTS_PER_BRIDGE): number {
  if (!Number.isInteger(ordinal) || ordinal < 0)
    throw new Error(`address ordinal ${ordinal} is not a whole number >= 0`);
  if (!Number.isInteger(perBridge) || perBridge < 1 || perBridge > 1000)
    throw new Error(`guests per bridge must be 1..1000, got ${perBridge}`);
  const slot = Math.floor(ordinal / perBridge);
  if (slot > MAX_OVERFLOW_BRIDGES)
    throw new Error(
      `address #${ordinal} would need overflow bridge ${slot}; a node makes at most ${MAX_OVERFLOW_BRIDGES} (${(MAX_OVERFLOW_BRIDGES + 1) * perBridge} guests): use a smaller pod CIDR per node`,
    );
  return slot;
}

/** The k-th overflow bridge of `primary` and its veth pair: `<primary>-<k>`, `-<k>u`, `-<k>d`, the
 *  primary's name shortened so that each fits Linux's 15 characters. */
export function overflowLink(primary: string, k: number): OverflowLink {
  if (!Number.isInteger(k) || k < 1 || k > MAX_OVERFLOW_BRIDGES)
    throw new Error(`overflow bridge ${k} is out of 1..${MAX_OVERFLOW_BRIDGES}`);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(primary))
    throw new Error(`bridge name ${JSON.stringify(primary)} is not an interface name`);
  const base = primary.slice(0, 15 - `-${k}u`.length);
  return { bridge: `${base}-${k}`, uplink: `${base}-${k}u`, downlink: `${base}-${k}d` };
}

/** An address's ordinal: its place (0-based) among every address of the IPAM spans, in order;
 *  undefined outside them. */
export function addressOrdinal(
  spans: readonly { first: number; last: number }[],
  ip: number,
): number | undefined {
  let before = 0;
  for (const s of spans) {
    if (ip >= s.first && ip <= s.last) return before + ip - s.first;
    before += s.last - s.first + 1;
  }
  return undefined;
}
