import test from "ava";
import type { Dominfo } from "../libxl-structs.js";
import { stateOf } from "../domain-state.js";
import { decodeDomains, DOM, DOMAIN_RECORD_BYTES, LIBXL_DOMAIN_TYPE, SLOT } from "./domain-list.js";

/** One record as sfx_list_domains writes it (native/lib/sfxen/list.c), from Xen's view of a domain. */
function record(d: {
  domid: number;
  state: number;
  reason?: number;
  kib: number;
  maxKib: bigint;
  cpuNs: bigint;
  vcpus: number;
  maxVcpuId: number;
  handle: number[];
}): Buffer {
  const buf = Buffer.alloc(DOMAIN_RECORD_BYTES);
  const put = (s: number, v: bigint | number) => buf.writeBigInt64LE(BigInt(v), s * 8);
  put(SLOT.domid, d.domid);
  put(SLOT.state, d.state);
  put(SLOT.shutdownReason, d.reason ?? -1);
  put(SLOT.vcpusOnline, d.vcpus);
  put(SLOT.maxVcpuId, d.maxVcpuId);
  put(SLOT.kib, d.kib);
  put(SLOT.maxKib, d.maxKib);
  put(SLOT.cpuNs, d.cpuNs);
  Buffer.from(d.handle).copy(buf, SLOT.handle * 8);
  return buf;
}

const handle = (first: number) => Array.from({ length: 16 }, (_, i) => (first + i) & 0xff);

test("records decode to libxl's dominfo: flags, memory, vcpus, cpu time and handle", (t) => {
  const buf = Buffer.concat([
    record({
      domid: 0,
      state: DOM.running,
      kib: 1_048_576,
      maxKib: 2n ** 62n,
      cpuNs: 123_456_789_012n,
      vcpus: 4,
      maxVcpuId: 3,
      handle: new Array<number>(16).fill(0),
    }),
    record({
      domid: 7,
      state: DOM.paused | DOM.blocked,
      kib: 4096,
      maxKib: 5120n,
      cpuNs: 5n,
      vcpus: 1,
      maxVcpuId: 0,
      handle: handle(0xf0),
    }),
    record({
      domid: 9,
      state: DOM.shutdown | DOM.hvm,
      reason: 3,
      kib: 8192,
      maxKib: 8192n,
      cpuNs: 0n,
      vcpus: 0,
      maxVcpuId: 1,
      handle: handle(1),
    }),
  ]);
  const [dom0, paused, crashed] = decodeDomains(buf, 3) as [Dominfo, Dominfo, Dominfo];
  t.is(dom0.domid, 0);
  t.is(dom0.current_memkb, 1_048_576);
  t.is(dom0.max_memkb, 2 ** 62);
  t.is(dom0.cpu_time, 123_456_789_012n);
  t.deepEqual([dom0.vcpu_online, dom0.vcpu_max_id], [4, 3]);
  t.is(stateOf(dom0).state, "running");
  t.is(dom0.domain_type, LIBXL_DOMAIN_TYPE.pv);

  t.is(paused.domid, 7);
  t.deepEqual(paused.uuid, handle(0xf0));
  t.true(paused.paused && paused.blocked && !paused.running && !paused.shutdown && !paused.dying);
  t.is(stateOf(paused).state, "paused");
  t.is(paused.shutdown_reason, -1);

  t.is(crashed.shutdown_reason, 3);
  t.deepEqual(stateOf(crashed), { state: "crashed", shutdownReason: "crash" });
  t.is(crashed.domain_type, LIBXL_DOMAIN_TYPE.hvm);
});

test("a count beyond the buffer is refused, not read past its end", (t) => {
  t.throws(() => decodeDomains(Buffer.alloc(DOMAIN_RECORD_BYTES), 2), { instanceOf: RangeError });
  t.deepEqual(decodeDomains(Buffer.alloc(0), 0), []);
});
