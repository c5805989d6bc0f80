// The guest's command line and memory from its pod: a table of what goes in and what comes out.
import test from "ava";
import { CriError } from "../errors.js";
import type { ContainerConfig, LinuxContainerResources } from "../proto.js";
import {
  guestCmdline,
  guestDomainSpec,
  MAX_CMDLINE,
  memoryFromResources,
  resizeFromResources,
} from "./guest-config.js";

const net = { ip: "10.244.1.5", prefixLength: 24, gateway: "10.244.1.1" };
const sandbox = (args: string[] = [], env: Record<string, string> = {}, hostname = "") => ({
  config: { args, env, runPolicy: "Running" as const },
  hostname,
});
type CriWords = Pick<ContainerConfig, "command" | "args" | "envs">;
const noCri: CriWords = { command: [], args: [], envs: [] };
/** The CRI carries env values as bytes. */
const env = (key: string, value: string) => ({ key, value: Buffer.from(value) });

const cases: {
  name: string;
  image?: string;
  cri?: CriWords;
  sb?: ReturnType<typeof sandbox>;
  want: string;
}[] = [
  { name: "network only", want: "ip=10.244.1.5/24 gw=10.244.1.1" },
  {
    name: "image words first, then CRI command and args, the VM's args and env, the network, the hostname",
    image: "  console=hvc0   quiet ",
    cri: { command: ["/app"], args: ["-v"], envs: [] },
    sb: sandbox(["--ticks=3"], { MODE: "fast" }, "hello"),
    want: "console=hvc0 quiet /app -v --ticks=3 MODE=fast ip=10.244.1.5/24 gw=10.244.1.1 hostname=hello",
  },
  {
    name: "the kubelet's service variables stay off; the pod's own env goes on",
    cri: {
      command: [],
      args: [],
      envs: [env("KUBERNETES_SERVICE_HOST", "10.96.0.1"), env("LEVEL", "debug")],
    },
    want: "LEVEL=debug ip=10.244.1.5/24 gw=10.244.1.1",
  },
];

for (const c of cases)
  test(`cmdline: ${c.name}`, (t) => {
    t.is(guestCmdline(c.image, c.cri ?? noCri, c.sb ?? sandbox(), net), c.want);
  });

const refused: {
  name: string;
  image?: string;
  cri: CriWords;
  sb?: ReturnType<typeof sandbox>;
  message: RegExp;
}[] = [
  {
    name: "an arg with a space",
    cri: { command: [], args: ["a b"], envs: [] },
    message: /args "a b" cannot go on a kernel command line/,
  },
  {
    name: "an empty command word",
    cri: { command: [""], args: [], envs: [] },
    message: /command "" cannot go/,
  },
  {
    name: "an env value with a quote",
    cri: { command: [], args: [], envs: [env("X", 'a"b')] },
    message: /env "X=a\\"b"/,
  },
  {
    name: "a CRI arg that sets the gateway",
    cri: { command: [], args: ["gw=10.0.0.1"], envs: [] },
    message: /args "gw=10.0.0.1" cannot go on a kernel command line: must not set ip=, gw=, hostname=/,
  },
  {
    name: "a CRI env variable named like a key the shim sets",
    cri: { command: [], args: [], envs: [env("hostname", "evil")] },
    message: /env name "hostname" .*must not set/,
  },
  {
    name: "a CRI arg with an escape character",
    cri: { command: [], args: ["a\u001b[2Jb"], envs: [] },
    message: /control characters/,
  },
  {
    name: "a sandbox record whose arg holds two words (written before the rule)",
    cri: noCri,
    sb: sandbox(["interval=1 gw=10.0.0.1"]),
    message: /VM args "interval=1 gw=10.0.0.1" cannot go .*one word/,
  },
  {
    name: "a sandbox record whose env sets ip=",
    cri: noCri,
    sb: sandbox([], { ip: "10.0.0.9/24" }),
    message: /VM env "ip=10.0.0.9\/24" .*must not set/,
  },
  {
    name: "an image whose command line sets ip=",
    image: "console=hvc0 ip=10.1.1.1/8",
    cri: noCri,
    message: /image's command line word "ip=10.1.1.1\/8" must not set/,
  },
  {
    name: "more than Xen's limit",
    cri: noCri,
    sb: sandbox(["x".repeat(MAX_CMDLINE)]),
    message: new RegExp(`kernel command line is \\d+ bytes; Xen allows ${MAX_CMDLINE}`),
  },
];

for (const r of refused)
  test(`cmdline refused: ${r.name}`, (t) => {
    const err = t.throws(() => guestCmdline(r.image, r.cri, r.sb ?? sandbox(), net), {
      instanceOf: CriError,
    });
    t.is(err?.code, "InvalidArgument");
    t.regex(err?.message ?? "", r.message);
  });

test("memory from the CRI's limit, rounded up to MiB; no limit is no answer", (t) => {
  t.is(memoryFromResources({ memory_limit_in_bytes: String(64 * 1024 * 1024) }), 64);
  t.is(memoryFromResources({ memory_limit_in_bytes: String(64 * 1024 * 1024 + 1) }), 65);
  t.is(memoryFromResources({ memory_limit_in_bytes: "0" }), undefined);
  t.is(memoryFromResources(null), undefined);
});

test("the domain CreateContainer builds: the container's kernel and words, its sizes, one vif on the pod's bridge", (t) => {
  const meta = {
    domainName: "sf-abc",
    kernelPath: "/run/k/1/kernel",
    initrdPath: "/run/k/1/initrd",
    cmdline: "ip=10.244.1.5/24 gw=10.244.1.1",
    guestType: "pvh" as const,
  };
  const pod = { bridge: "sfbr0", mac: "02:00:0a:f4:01:05", ip: "10.244.1.5" };
  const size = { memoryMiB: 96, vcpus: 2 };
  const guarded = guestDomainSpec(meta, size, pod, true);
  t.deepEqual(guarded, {
    name: "sf-abc",
    kernelPath: "/run/k/1/kernel",
    initrdPath: "/run/k/1/initrd",
    cmdline: "ip=10.244.1.5/24 gw=10.244.1.1",
    memoryMiB: 96,
    vcpus: 2,
    guestType: "pvh",
    vifs: [{ bridge: "sfbr0", mac: "02:00:0a:f4:01:05", ip: "10.244.1.5" }],
  });
  // Without anti-spoofing the vif names no address: the hypervisor then guards nothing on it.
  t.deepEqual(guestDomainSpec(meta, size, pod, false).vifs, [{ bridge: "sfbr0", mac: "02:00:0a:f4:01:05" }]);
});

test("a resize takes the memory limit and vCPUs from the CPU quota; absent figures stay undefined", (t) => {
  const r = (o: Record<string, string>) => resizeFromResources(o as unknown as LinuxContainerResources);
  t.deepEqual(
    r({ memory_limit_in_bytes: String(32 * 1024 * 1024), cpu_quota: "150000", cpu_period: "100000" }),
    {
      memoryMiB: 32,
      vcpus: 2,
    },
  );
  t.deepEqual(r({ cpu_quota: "10000", cpu_period: "100000" }), { memoryMiB: undefined, vcpus: 1 });
  t.deepEqual(r({ cpu_quota: "-1", cpu_period: "100000" }), { memoryMiB: undefined, vcpus: undefined });
  t.deepEqual(r({}), { memoryMiB: undefined, vcpus: undefined });
});
