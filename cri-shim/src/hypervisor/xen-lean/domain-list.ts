// Every domain from libsfxen's sfx_list_domains (one hypercall; libxl_list_domain makes one more
// per domain, which made each create slower by the domains already held). The slots are those of
// native/lib/sfxen/sfxen.h; the records become libxl's Dominfo shape, so names, states and
// DomainInfo come from the same code as the libxl backend's list.
import type { Dominfo } from "../libxl-structs.js";

export const DOMAIN_SLOTS = 10;
export const SLOT = {
  domid: 0,
  state: 1,
  shutdownReason: 2,
  vcpusOnline: 3,
  maxVcpuId: 4,
  kib: 5,
  maxKib: 6,
  cpuNs: 7,
  handle: 8,
} as const;
export const DOM = { dying: 1, shutdown: 2, paused: 4, blocked: 8, running: 16, hvm: 32 } as const;
/** libxl_domain_type's values, as libxl reports a listed domain (HVM for HVM and PVH alike). */
export const LIBXL_DOMAIN_TYPE = { hvm: 1, pv: 2 } as const;

export const DOMAIN_RECORD_BYTES = DOMAIN_SLOTS * 8;

/** The first n records of buf as Dominfo. */
export function decodeDomains(buf: Buffer, n: number): Dominfo[] {
  if (n * DOMAIN_RECORD_BYTES > buf.length) throw new RangeError(`${n} domain records exceed the buffer`);
  const out = new Array<Dominfo>(n);
  for (let i = 0; i < n; i++) {
    const b = i * DOMAIN_RECORD_BYTES;
    const slot = (s: number) => buf.readBigInt64LE(b + s * 8);
    const state = Number(slot(SLOT.state));
    const h = b + SLOT.handle * 8;
    out[i] = {
      uuid: Array.from(buf.subarray(h, h + 16)),
      domid: Number(slot(SLOT.domid)),
      running: (state & DOM.running) !== 0,
      blocked: (state & DOM.blocked) !== 0,
      paused: (state & DOM.paused) !== 0,
      shutdown: (state & DOM.shutdown) !== 0,
      dying: (state & DOM.dying) !== 0,
      shutdown_reason: Number(slot(SLOT.shutdownReason)),
      current_memkb: Number(slot(SLOT.kib)),
      max_memkb: Number(slot(SLOT.maxKib)),
      cpu_time: slot(SLOT.cpuNs),
      vcpu_online: Number(slot(SLOT.vcpusOnline)),
      vcpu_max_id: Number(slot(SLOT.maxVcpuId)),
      domain_type: state & DOM.hvm ? LIBXL_DOMAIN_TYPE.hvm : LIBXL_DOMAIN_TYPE.pv,
    };
  }
  return out;
}
