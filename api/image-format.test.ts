import test from "ava";
import {
  IMAGE_ANNOTATIONS as S,
  ImageFormatError,
  imageAnnotationsFor,
  parseImageAnnotations,
  UNIKRAFT_ANNOTATIONS as K,
  URUNC_ANNOTATIONS as U,
  type ImageAnnotationSources,
  type UnikernelImageConfig,
} from "./image-format.js";

// The same unikernel described in the three dialects, placed where each ecosystem's tools put them.
const ours: ImageAnnotationSources = {
  manifest: {
    [S.kernel]: "/unikraft/bin/kernel",
    [S.initrd]: "unikraft/bin/initrd",
    [S.cmdline]: "/chttp -p 80",
    [S.hypervisor]: "xen",
  },
  architecture: "amd64",
  os: "linux",
};
const urunc: ImageAnnotationSources = {
  // bunny writes its keys as config LABELs, with "" for the ones it does not use.
  labels: {
    [U.binary]: "/unikraft/bin/kernel",
    [U.initrd]: "/unikraft/bin/initrd",
    [U.cmdline]: "/chttp -p 80",
    [U.hypervisor]: "xen",
    [U.unikernelType]: "unikraft",
    [U.block]: "",
    [U.blkMntPoint]: "",
  },
  architecture: "amd64",
  os: "linux",
};
const unikraft: ImageAnnotationSources = {
  // KraftKit annotates the layer descriptors and keeps the arguments in config.Cmd.
  layers: [
    { [K.kernel]: "/unikraft/bin/kernel", [K.plat]: "xen", [K.arch]: "x86_64" },
    { [K.initrd]: "/unikraft/bin/initrd" },
  ],
  cmd: ["/chttp", "-p", "80"],
  architecture: "amd64",
  os: "linux",
};

function withoutProvenance(c: UnikernelImageConfig): Omit<UnikernelImageConfig, "dialect" | "framework"> {
  const { dialect: _d, framework: _f, ...rest } = c;
  return rest;
}

test("ours, urunc's and Unikraft's annotation sets map to the same config", (t) => {
  const expected = {
    hypervisor: "xen",
    guestType: "pv",
    kernelPath: "unikraft/bin/kernel",
    initrdPath: "unikraft/bin/initrd",
    cmdline: "/chttp -p 80",
  };
  const a = parseImageAnnotations(ours);
  const b = parseImageAnnotations(urunc);
  const c = parseImageAnnotations(unikraft);
  t.deepEqual(withoutProvenance(a), expected);
  t.deepEqual(withoutProvenance(b), expected);
  t.deepEqual(withoutProvenance(c), expected);
  t.deepEqual([a.dialect, b.dialect, c.dialect], ["superfluid", "urunc", "unikraft"]);
  t.is(b.framework, "unikraft");
});

test("our guest-type and memory keys apply on top of a urunc image", (t) => {
  const c = parseImageAnnotations({ ...urunc, manifest: { [S.guestType]: "pvh", [S.memoryMiB]: "16" } });
  t.is(c.dialect, "urunc");
  t.is(c.guestType, "pvh");
  t.is(c.memoryMiB, 16);
});

test("manifest annotations win over config labels; ours win over urunc's", (t) => {
  const c = parseImageAnnotations({
    manifest: { [S.kernel]: "k2" },
    labels: { [S.kernel]: "k1", [U.binary]: "k3", [U.hypervisor]: "qemu", [U.unikernelType]: "rumprun" },
  });
  t.is(c.kernelPath, "k2");
  t.is(c.dialect, "superfluid");
});

test("imageAnnotationsFor round-trips through the parser", (t) => {
  const config = {
    kernelPath: "unikernel/kernel",
    initrdPath: "unikernel/initrd",
    guestType: "pvh" as const,
    cmdline: "a b=c",
    memoryMiB: 8,
  };
  t.deepEqual(parseImageAnnotations({ manifest: imageAnnotationsFor(config) }), {
    ...config,
    dialect: "superfluid",
    hypervisor: "xen",
  });
});

const bad: Array<[string, ImageAnnotationSources, string, RegExp]> = [
  [
    "no unikernel annotation at all",
    { manifest: { "org.opencontainers.image.title": "nginx" } },
    "",
    /not a unikernel image/,
  ],
  [
    "urunc hypervisor qemu",
    { labels: { ...urunc.labels, [U.hypervisor]: "qemu" } },
    U.hypervisor,
    /"qemu" is not supported: superfluid runs guests on Xen only/,
  ],
  [
    "urunc hypervisor firecracker",
    { labels: { ...urunc.labels, [U.hypervisor]: "firecracker" } },
    U.hypervisor,
    /firecracker/,
  ],
  [
    "urunc without hypervisor",
    { labels: { [U.binary]: "/k", [U.unikernelType]: "unikraft" } },
    U.hypervisor,
    /required/,
  ],
  [
    "urunc without unikernelType",
    { labels: { [U.binary]: "/k", [U.hypervisor]: "xen" } },
    U.unikernelType,
    /required/,
  ],
  [
    "urunc without binary",
    { labels: { [U.unikernelType]: "rumprun", [U.hypervisor]: "xen" } },
    U.binary,
    /missing or empty/,
  ],
  ["urunc block rootfs", { labels: { ...urunc.labels, [U.block]: "/rootfs.ext2" } }, U.block, /block-device/],
  [
    "unikraft plat qemu",
    { layers: [{ [K.kernel]: "/k", [K.plat]: "qemu" }] },
    K.plat,
    /"qemu" is not supported/,
  ],
  ["unikraft plat fc", { layers: [{ [K.kernel]: "/k", [K.plat]: "fc" }] }, K.plat, /"fc" is not supported/],
  [
    "unikraft arch arm64",
    { layers: [{ [K.kernel]: "/k", [K.plat]: "xen", [K.arch]: "arm64" }] },
    K.arch,
    /only x86_64/,
  ],
  ["our hypervisor kvm", { manifest: { [S.kernel]: "k", [S.hypervisor]: "kvm" } }, S.hypervisor, /Xen only/],
  [
    "unknown guest type",
    { manifest: { [S.kernel]: "k", [S.guestType]: "hvm" } },
    S.guestType,
    /must be one of pv, pvh/,
  ],
  [
    "guest type on a urunc image",
    { ...urunc, manifest: { [S.guestType]: "hvm" } },
    S.guestType,
    /must be one of/,
  ],
  [
    "memory not a number",
    { manifest: { [S.kernel]: "k", [S.memoryMiB]: "8Mi" } },
    S.memoryMiB,
    /whole number of MiB/,
  ],
  ["memory zero", { manifest: { [S.kernel]: "k", [S.memoryMiB]: "0" } }, S.memoryMiB, /between 1 and 65536/],
  [
    "kernel path with ..",
    { manifest: { [S.kernel]: "../../etc/passwd" } },
    S.kernel,
    /must not contain "\.\."/,
  ],
  ["kernel path empty", { manifest: { [S.kernel]: " " } }, S.kernel, /missing or empty/],
  ["kernel path only slashes", { manifest: { [S.kernel]: "/./" } }, S.kernel, /names no file/],
  ["initrd path with ..", { manifest: { [S.kernel]: "k", [S.initrd]: "a/../../b" } }, S.initrd, /\.\./],
  [
    "command line too long",
    { manifest: { [S.kernel]: "k", [S.cmdline]: "x".repeat(1025) } },
    S.cmdline,
    /Xen allows 1024/,
  ],
  [
    "command line with newline",
    { manifest: { [S.kernel]: "k", [S.cmdline]: "a\nb" } },
    S.cmdline,
    /one line/,
  ],
  [
    "unikraft Cmd too long",
    { layers: [{ [K.kernel]: "/k" }], cmd: ["x".repeat(2000)] },
    "config.Cmd",
    /Xen allows/,
  ],
  [
    "arm64 image",
    { manifest: { [S.kernel]: "k" }, architecture: "arm64" },
    "",
    /architecture "arm64" is not supported/,
  ],
  ["windows image", { manifest: { [S.kernel]: "k" }, os: "windows" }, "", /os "windows" is not supported/],
];

for (const [name, src, key, message] of bad) {
  test(`refused: ${name}`, (t) => {
    const err = t.throws(() => parseImageAnnotations(src), { instanceOf: ImageFormatError });
    t.is(err?.key, key);
    t.regex(err?.message ?? "", message);
    if (key !== "") t.true(err?.message.includes(key), "the message names the key");
  });
}
