// readDominfos against koffi's own decoding of the same memory: the offsets are koffi's layout of
// libxl_dominfo (checked against Xen's headers by layout.test.ts), read without koffi.decode.
import test from "ava";
import koffi from "koffi";
import { type Dominfo, DominfoType, dominfoBytes, readDominfos } from "./libxl-structs.js";

const sample = (i: number) => ({
  uuid: Array.from({ length: 16 }, (_, k) => (i * 16 + k) & 0xff),
  domid: 100 + i,
  ssidref: 0,
  ssid_label: null,
  running: i % 2 === 0,
  blocked: i % 3 === 0,
  paused: i % 4 === 0,
  shutdown: i === 2,
  dying: i === 3,
  never_stop: false,
  shutdown_reason: i === 2 ? 3 : -1,
  outstanding_memkb: 0,
  current_memkb: 4096 * (i + 1),
  shared_memkb: 0,
  paged_memkb: 0,
  max_memkb: 2 ** 40 + i, // beyond 32 bits
  cpu_time: 123456789012345n + BigInt(i),
  vcpu_max_id: i,
  vcpu_online: i + 1,
  cpupool: 0,
  gpaddr_bits: 0,
  domain_type: 1 + (i % 3),
});

test("libxl_dominfo structs read from their memory match koffi's decoding", (t) => {
  const n = 5;
  const mem = koffi.alloc(DominfoType, n);
  try {
    for (let i = 0; i < n; i++) koffi.encode(mem, i * koffi.sizeof(DominfoType), DominfoType, sample(i));
    const read = readDominfos(koffi.view(mem, dominfoBytes(n)), n);
    const decoded = koffi.decode(mem, 0, DominfoType, n) as Dominfo[];
    t.is(read.length, n);
    for (let i = 0; i < n; i++) {
      const d = decoded[i]!;
      const r = read[i]!;
      t.deepEqual(r.uuid, Array.from(d.uuid), `uuid of ${i}`);
      for (const k of ["domid", "running", "blocked", "paused", "shutdown", "dying"] as const)
        t.is(r[k], d[k], `${k} of ${i}`);
      t.is(r.shutdown_reason, d.shutdown_reason);
      t.is(BigInt(r.current_memkb), BigInt(d.current_memkb));
      t.is(BigInt(r.max_memkb), BigInt(d.max_memkb));
      t.is(BigInt(r.cpu_time), BigInt(d.cpu_time));
      t.is(r.vcpu_max_id, d.vcpu_max_id);
      t.is(r.vcpu_online, d.vcpu_online);
      t.is(r.domain_type, d.domain_type);
    }
    t.is(read[2]!.shutdown_reason, 3);
    t.is(read[4]!.max_memkb, 2 ** 40 + 4);
  } finally {
    koffi.free(mem);
  }
});

test("no structs, no reads", (t) => {
  t.deepEqual(readDominfos(new ArrayBuffer(0), 0), []);
});
