// Entry point of the CRI shim in dom0: `node dist/cri-shim/src/main.js [flags]`. Every flag has an
// environment variable twin (SUPERFLUID_<FLAG>) so a systemd unit or a chart can set either.
import { parseArgs } from "node:util";
import { DEFAULT_HYPERVISOR } from "./hypervisor/backend.js";
import { THREADPOOL_SIZE } from "./threadpool.js";

const HELP = `superfluid CRI shim: serves CRI v1 (RuntimeService, ImageService) on a unix socket, runs pods as Xen domains.
  --socket PATH            CRI socket (default /run/superfluid/cri.sock)
  --state-dir DIR          sandbox/container records (default /var/lib/superfluid/state)
  --image-dir DIR          image store (default /var/lib/superfluid/images)
  --kernel-cache DIR       tmpfs dir the kernels are served to Xen from (default /run/superfluid/kernels)
  --cni-conf FILE          bridge + host-local .conf/.conflist (default: first in /etc/cni/net.d, else
                           xenbr0's subnet if it has an address, else bridge sfbr0 with 10.89.0.0/24)
  --bridge NAME            with --pod-cidr: a bridge + host-local config without a file (e.g. xenbr0)
  --pod-cidr CIDR          the node's pod subnet for --bridge (gateway: its first address)
  --cni-plugin-dir DIR     ignored (the shim leases addresses itself, as host-local would; no plugin runs)
  --console-log-dir DIR    xenconsoled --log-dir with guest-<name>.log (default /var/log/xen/console; "" reads the pty)
  --plain-http-registries  comma list of registry hosts reached without TLS (default localhost,127.0.0.1)
  --registry-ca FILE       extra CA for TLS registries
  --vif-antispoof BOOL     drop what a guest sends from another IP or MAC than its own (nftables, in-process; default true)
  --default-memory-mib N   guest memory when neither pod nor image says (default 64)
  --kubeconfig FILE        the apiserver the node agent talks to (default: in-cluster service account)
  --node-name NAME         run the node agent (runPolicy pause/suspend/resume) for the VMs on this node
  --checkpoint-dir DIR     where suspended domains are saved (default /var/lib/superfluid/checkpoints)
  --node-address IP        where this node receives live migrations (default: the Node's first InternalIP)
  --migration-timeout S    a migration stream with no traffic this long fails (default 120; a restore
                           under emulation was seen silent for 52 s)
  --fallback-runtime-endpoint EP  the node's Linux CRI runtime (e.g. unix:///run/containerd/containerd.sock):
                           pods whose runtime handler is not superfluid, and their images, go there;
                           lists and Status merge both. Unset: every pod is ours, Linux images refused
  --hypervisor lean|libxl  domain builder: lean (in-process, shell pool, no processes per VM; the
                           default) or libxl (libxenlight, vif hotplug scripts; for comparison and as
                           a fallback)
  --pool-depth N           lean: pre-built shells kept per shape (default 2; 0: every create is cold)
  --pool-max-mib N         lean: memory all shells together may hold (default 256)
  --pool-shapes LIST       lean: shapes to keep before any demand, MEMORY_MIB[:VCPUS],... (default: the
                           default memory, 1 vcpu); recent pods' shapes are learned
  --metrics-address ADDR   serve Prometheus metrics on HOST:PORT/metrics, unauthenticated (default: off;
                           an empty HOST is 127.0.0.1)
  --log-level LEVEL        error|warn|info|debug (default info)`;

const FLAGS = {
  socket: "/run/superfluid/cri.sock",
  "state-dir": "/var/lib/superfluid/state",
  "image-dir": "/var/lib/superfluid/images",
  "kernel-cache": "/run/superfluid/kernels",
  "cni-conf": "",
  bridge: "",
  "pod-cidr": "",
  "cni-plugin-dir": "/usr/lib/cni:/opt/cni/bin",
  "console-log-dir": "/var/log/xen/console",
  "plain-http-registries": "localhost,127.0.0.1",
  "registry-ca": "",
  "default-memory-mib": "64",
  "vif-antispoof": "true",
  "log-level": "info",
  kubeconfig: "",
  "node-name": "",
  "checkpoint-dir": "/var/lib/superfluid/checkpoints",
  "node-address": "",
  "migration-timeout": "120",
  "fallback-runtime-endpoint": "",
  hypervisor: DEFAULT_HYPERVISOR,
  "pool-depth": "2",
  "pool-max-mib": "256",
  "pool-shapes": "",
  "metrics-address": "",
} as const;
type Flag = keyof typeof FLAGS;

function parse(): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({
      options: {
        ...Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: "string" as const }])),
        help: { type: "boolean" },
      },
      strict: true,
    });
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${HELP}`);
    process.exit(2);
  }
}
const { values } = parse();
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const flag = (name: Flag): string => {
  const v =
    (values as Record<string, string | undefined>)[name] ??
    process.env[`SUPERFLUID_${name.toUpperCase().replace(/-/g, "_")}`];
  return v ?? FLAGS[name];
};

// The logger reads LOG_LEVEL when first imported: set it before anything else loads.
process.env.LOG_LEVEL = flag("log-level");
// libuv's thread pool runs every koffi async call (libxl, libxenguest, XenStore) and every fs call
// (the stores' write-fsync-rename). Its default of 4 threads made a burst of creates queue their
// XenStore writes behind each other's fsyncs and libxl calls: a create's vif step took 0.6-1.8 s at
// 200 VMs. libuv reads the size at its first use, which is after this line.
process.env.UV_THREADPOOL_SIZE ??= String(THREADPOOL_SIZE);
const { runShim } = await import("./shim.js");
const memory = Number(flag("default-memory-mib"));
const migrationTimeoutS = Number(flag("migration-timeout"));
if (!Number.isInteger(migrationTimeoutS) || migrationTimeoutS < 1) {
  console.error(`--migration-timeout: not a positive number of seconds: ${flag("migration-timeout")}`);
  process.exit(2);
}
if (!Number.isInteger(memory) || memory < 1) {
  console.error(`--default-memory-mib: not a positive integer: ${flag("default-memory-mib")}`);
  process.exit(2);
}
const hypervisorKind = flag("hypervisor");
if (hypervisorKind !== "lean" && hypervisorKind !== "libxl") {
  console.error(`--hypervisor: lean or libxl, got ${hypervisorKind}`);
  process.exit(2);
}
const poolDepth = Number(flag("pool-depth"));
const poolMaxMiB = Number(flag("pool-max-mib"));
if (![poolDepth, poolMaxMiB].every((n) => Number.isInteger(n) && n >= 0)) {
  console.error(`--pool-depth and --pool-max-mib: non-negative integers`);
  process.exit(2);
}
await runShim({
  socketPath: flag("socket"),
  stateDir: flag("state-dir"),
  imageDir: flag("image-dir"),
  kernelCacheDir: flag("kernel-cache"),
  cniConf: flag("cni-conf") || undefined,
  bridge: flag("bridge") || undefined,
  podCidr: flag("pod-cidr") || undefined,
  consoleLogDir: flag("console-log-dir") || undefined,
  plainHttpRegistries: flag("plain-http-registries")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
  registryCa: flag("registry-ca") || undefined,
  defaultMemoryMiB: memory,
  vifAntiSpoof: flag("vif-antispoof") !== "false",
  kubeconfig: flag("kubeconfig") || undefined,
  nodeName: flag("node-name") || undefined,
  checkpointDir: flag("checkpoint-dir"),
  nodeAddress: flag("node-address") || undefined,
  migrationTimeoutMs: migrationTimeoutS * 1000,
  fallbackRuntimeEndpoint: flag("fallback-runtime-endpoint") || undefined,
  hypervisor: hypervisorKind,
  pool: { depth: poolDepth, maxMiB: poolMaxMiB, shapes: flag("pool-shapes") || `${memory}` },
  metricsAddress: flag("metrics-address") || undefined,
}).catch((err: unknown) => {
  console.error(`superfluid CRI shim: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
