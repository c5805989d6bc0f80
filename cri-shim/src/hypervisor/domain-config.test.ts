// DomainSpec -> libxl_domain_config JSON, and the validation in front of it: table tests.
import test from "ava";
import { domainConfig, domainConfigJSON, MAX_CMDLINE_BYTES } from "./domain-config.js";
import { type DomainSpec, HypervisorError } from "./types.js";

const base: DomainSpec = {
  name: "sf-0123abcd",
  kernelPath: "/var/lib/superfluid/kernels/hello",
  cmdline: "console=hvc0 hello",
  memoryMiB: 16,
  vcpus: 1,
  guestType: "pv",
  vifs: [],
};

const valid: [string, Partial<DomainSpec>, (cfg: ReturnType<typeof domainConfig>) => unknown, unknown][] = [
  [
    "pv guest sets c_info.type and the pv union key",
    {},
    (c) => [c.c_info.type, c.c_info.name, "type.pv" in c.b_info, "type.pvh" in c.b_info],
    ["pv", "sf-0123abcd", true, false],
  ],
  [
    "a given uuid is used, lower-cased",
    { uuid: "0A0B0C0D-0000-4000-8000-000000000001" },
    (c) => c.c_info.uuid,
    "0a0b0c0d-0000-4000-8000-000000000001",
  ],
  [
    "pvh guest",
    { guestType: "pvh" },
    (c) => [c.c_info.type, "type.pvh" in c.b_info, "type.pv" in c.b_info],
    ["pvh", true, false],
  ],
  [
    "pvh guest gets a HAP paging pool sized from vCPUs and max memory; pv none",
    { guestType: "pvh", vcpus: 1, maxVcpus: 2, memoryMiB: 16, maxMemoryMiB: 64 },
    (c) => c.b_info.shadow_memkb,
    1024 * 3 + 8 * 64,
  ],
  ["pv guest has no paging pool", {}, (c) => c.b_info.shadow_memkb, undefined],
  [
    "memory in KiB, max = target by default",
    { memoryMiB: 160 },
    (c) => [c.b_info.max_memkb, c.b_info.target_memkb],
    [163840, 163840],
  ],
  [
    "maxMemoryMiB raises the ceiling only",
    { memoryMiB: 64, maxMemoryMiB: 256 },
    (c) => [c.b_info.max_memkb, c.b_info.target_memkb],
    [262144, 65536],
  ],
  ["vcpus: all online", { vcpus: 3 }, (c) => [c.b_info.max_vcpus, c.b_info.avail_vcpus], [3, [0, 1, 2]]],
  [
    "maxVcpus: extra vcpus start offline",
    { vcpus: 2, maxVcpus: 4 },
    (c) => [c.b_info.max_vcpus, c.b_info.avail_vcpus],
    [4, [0, 1]],
  ],
  [
    "kernel, cmdline, no ramdisk",
    {},
    (c) => [c.b_info.kernel, c.b_info.cmdline, "ramdisk" in c.b_info],
    ["/var/lib/superfluid/kernels/hello", "console=hvc0 hello", false],
  ],
  ["initrd becomes ramdisk", { initrdPath: "/tmp/initrd.cpio" }, (c) => c.b_info.ramdisk, "/tmp/initrd.cpio"],
  ["no vifs, no nics", {}, (c) => c.nics, []],
  [
    "vifs become nics with devids in order, MAC lower-cased",
    {
      vifs: [
        { bridge: "sfbr0", mac: "00:16:3E:AA:BB:01", ip: "10.88.0.5" },
        { bridge: "sfbr1", mac: "00:16:3e:aa:bb:02" },
      ],
    },
    (c) => c.nics,
    [
      {
        devid: 0,
        backend_domid: 0,
        nictype: "vif",
        bridge: "sfbr0",
        mac: "00:16:3e:aa:bb:01",
        ip: "10.88.0.5",
      },
      { devid: 1, backend_domid: 0, nictype: "vif", bridge: "sfbr1", mac: "00:16:3e:aa:bb:02" },
    ],
  ],
  [
    "cmdline with quotes and unicode survives JSON",
    { cmdline: 'a="b c" ünï' },
    (c) => JSON.parse(JSON.stringify(c)).b_info.cmdline,
    'a="b c" ünï',
  ],
  [
    "cmdline of the maximum length",
    { cmdline: "x".repeat(MAX_CMDLINE_BYTES - 1) },
    (c) => c.b_info.cmdline.length,
    MAX_CMDLINE_BYTES - 1,
  ],
];

for (const [title, patch, pick, expected] of valid) {
  test(`config: ${title}`, (t) => {
    t.deepEqual(pick(domainConfig({ ...base, ...patch })), expected);
  });
}

test("config JSON is exactly the config object", (t) => {
  const spec = { ...base, uuid: "0a0b0c0d-0000-4000-8000-000000000001" };
  t.deepEqual(JSON.parse(domainConfigJSON(spec)), domainConfig(spec));
});

test("without a uuid every domain gets a fresh random one", (t) => {
  const a = domainConfig(base).c_info.uuid;
  const b = domainConfig(base).c_info.uuid;
  t.regex(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.not(a, b);
});

const invalid: [string, Partial<DomainSpec> | Record<string, unknown>, RegExp][] = [
  ["empty name", { name: "" }, /name is empty/],
  ["malformed uuid", { uuid: "1234" }, /bad uuid/],
  ["nil uuid", { uuid: "00000000-0000-0000-0000-000000000000" }, /bad uuid/],
  ["name with a slash", { name: "a/b" }, /letters, digits/],
  ["name with a space", { name: "a b" }, /letters, digits/],
  ["name with a newline", { name: "a\nb" }, /letters, digits/],
  ["name starting with a dash", { name: "-x" }, /letters, digits/],
  ["all-digit name", { name: "42" }, /all digits/],
  ["Domain-0", { name: "Domain-0" }, /reserved/],
  ["name too long", { name: "a".repeat(65) }, /longer than 64/],
  ["relative kernel path", { kernelPath: "hello" }, /absolute/],
  ["empty kernel path", { kernelPath: "" }, /kernel path is empty/],
  ["kernel path with NUL", { kernelPath: "/a\0b" }, /control character/],
  ["relative initrd", { initrdPath: "x.cpio" }, /initrd path must be absolute/],
  ["cmdline too long", { cmdline: "x".repeat(MAX_CMDLINE_BYTES) }, /at most 1023/],
  ["cmdline with NUL", { cmdline: "a\0b" }, /NUL/],
  ["cmdline not a string", { cmdline: 5 }, /cmdline must be a string/],
  ["zero memory", { memoryMiB: 0 }, /memoryMiB must be an integer/],
  ["fractional memory", { memoryMiB: 1.5 }, /memoryMiB/],
  ["NaN memory", { memoryMiB: Number.NaN }, /memoryMiB/],
  ["absurd memory", { memoryMiB: 2 ** 30 }, /memoryMiB/],
  ["maxMemory below memory", { memoryMiB: 64, maxMemoryMiB: 32 }, /maxMemoryMiB/],
  ["zero vcpus", { vcpus: 0 }, /vcpus must be an integer/],
  ["too many vcpus", { vcpus: 129 }, /vcpus/],
  ["maxVcpus below vcpus", { vcpus: 2, maxVcpus: 1 }, /maxVcpus/],
  ["unknown guest type", { guestType: "hvm" }, /guestType/],
  ["vifs not an array", { vifs: "x" }, /vifs must be an array/],
  ["bad MAC", { vifs: [{ bridge: "br0", mac: "00:16:3e:zz:00:01" }] }, /bad MAC/],
  ["multicast MAC", { vifs: [{ bridge: "br0", mac: "01:16:3e:00:00:01" }] }, /multicast/],
  [
    "bridge name too long for Linux",
    { vifs: [{ bridge: "a".repeat(16), mac: "00:16:3e:00:00:01" }] },
    /bridge/,
  ],
  [
    "bridge with a semicolon (goes to a hotplug script)",
    { vifs: [{ bridge: "br0;reboot", mac: "00:16:3e:00:00:01" }] },
    /bridge/,
  ],
  ["bad IP", { vifs: [{ bridge: "br0", mac: "00:16:3e:00:00:01", ip: "10.0.0.300" }] }, /IPv4/],
  [
    "duplicate MAC",
    {
      vifs: [
        { bridge: "br0", mac: "00:16:3e:00:00:01" },
        { bridge: "br1", mac: "00:16:3E:00:00:01" },
      ],
    },
    /share a MAC/,
  ],
];

for (const [title, patch, message] of invalid) {
  test(`rejects ${title}`, (t) => {
    const err = t.throws(() => domainConfig({ ...base, ...patch } as DomainSpec), {
      instanceOf: HypervisorError,
      message,
    });
    t.is(err?.code, "InvalidArgument");
  });
}

test("vifs the caller wires reach libxl as no nic, and a domid given goes to c_info", (t) => {
  const spec: DomainSpec = { ...base, vifs: [{ bridge: "br0", mac: "00:16:3e:00:00:01" }] };
  const c = domainConfig(spec, { vifsByCaller: true, domid: 4711 });
  t.deepEqual(c.nics, []);
  t.is(c.c_info.domid, 4711);
  const d = domainConfig(spec);
  t.is(d.nics.length, 1);
  t.false("domid" in d.c_info, "Xen picks the domid when none is given");
});

for (const domid of [0, -1, 0x7ff0, 1.5, Number.NaN])
  test(`rejects domid ${domid}`, (t) => {
    const err = t.throws(() => domainConfig(base, { domid }), {
      instanceOf: HypervisorError,
      message: /domid must be 1..32751/,
    });
    t.is(err?.code, "InvalidArgument");
  });
