// containerd + runc in the dom0 of an emulated Xen node, as on a real node whose CRI front (the shim)
// hands every non-unikernel pod to containerd (--fallback-runtime-endpoint). Debian's binaries,
// reached through dom0's 9p root; its root on a tmpfs of dom0 (overlayfs snapshotter: both layers on
// tmpfs), its state under /run. Images come from the test registry through dom0's loopback forward
// (localhost:5000, plain HTTP). Pod networking: Debian's bridge + host-local CNI plugins on the same
// xenbr0 as the unikernels, with addresses from the top CONTAINERD_POD_ADDRESSES of the node's pod
// subnet (the shim leases from the bottom, in its own lease directory; see docs/e2e.md).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { XenNode } from "../xen-node/index.js";
import { addressAt } from "../xen-node/pod-network.js";
import { GO_IN_DOM0 } from "./kubelet.js";
import { REGISTRY_PORT_IN_DOM0 } from "./images.js";

export const CONTAINERD_SOCKET = "/run/containerd/containerd.sock";
export const CONTAINERD_ENDPOINT = `unix://${CONTAINERD_SOCKET}`;
/** How many addresses at the top of the pod subnet containerd's pods take. */
export const CONTAINERD_POD_ADDRESSES = 30;
/** The sandbox image (a busybox that sleeps: e2e/cluster/linux-images.ts pushes it). */
export const PAUSE_IMAGE = `localhost:${REGISTRY_PORT_IN_DOM0}/superfluid-e2e/pause:3.10`;

export interface Dom0Containerd {
  readonly endpoint: string;
  /** The pod address range containerd's CNI config hands out, [first, last]. */
  readonly podRange: [string, string];
  log(lines?: number): string;
  stop(): Promise<void>;
}

/** containerd's pod address range: the top CONTAINERD_POD_ADDRESSES host addresses of `cidr`. */
export function containerdPodRange(cidr: string): [string, string] {
  const size = 2 ** (32 - Number(cidr.split("/")[1]));
  return [addressAt(cidr, size - 1 - CONTAINERD_POD_ADDRESSES), addressAt(cidr, size - 2)];
}

export function containerdConfig(cniDir: string): string {
  const registry = `localhost:${REGISTRY_PORT_IN_DOM0}`;
  return `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "${CONTAINERD_SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${cniDir}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."${registry}"]
    endpoint = ["http://${registry}"]
`;
}

export function containerdCniConfig(node: Pick<XenNode, "bridge" | "podCidr" | "dom0Ip">): string {
  const [rangeStart, rangeEnd] = containerdPodRange(node.podCidr);
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "containerd-pods",
    plugins: [
      {
        type: "bridge",
        bridge: node.bridge,
        isGateway: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: node.podCidr, rangeStart, rangeEnd, gateway: node.dom0Ip }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      },
    ],
  });
}

/** Starts containerd in `node`'s dom0 and waits for its socket. */
export async function startDom0Containerd(node: XenNode): Promise<Dom0Containerd> {
  const dir = join(node.hostDir, "containerd");
  const dom0Dir = `${node.dom0HostDir}/containerd`;
  mkdirSync(join(dir, "cni"), { recursive: true });
  writeFileSync(join(dir, "config.toml"), containerdConfig(`${dom0Dir}/cni`));
  writeFileSync(join(dir, "cni", "10-containerd-pods.conflist"), containerdCniConfig(node));
  const logPath = join(dir, "containerd.log");
  const log = (lines = 60) => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no containerd log)";
    }
  };
  const r = await node.exec(
    [
      "set -e",
      // runc's cgroups (the kubelet mounts the same later; dom0-init does not).
      "mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup",
      "mkdir -p /var/lib/containerd /run/containerd",
      "mountpoint -q /var/lib/containerd || mount -t tmpfs -o size=768m tmpfs /var/lib/containerd",
      `${GO_IN_DOM0} setsid /usr/bin/containerd --config ${dom0Dir}/config.toml </dev/null >${dom0Dir}/containerd.log 2>&1 & echo $! >${dom0Dir}/pid`,
      // One wait loop in dom0 (every exec round trip forks under emulation).
      `pid=$(cat ${dom0Dir}/pid); i=0; while [ ! -S ${CONTAINERD_SOCKET} ]; do kill -0 $pid 2>/dev/null || exit 9; [ $i -ge 300 ] && exit 8; sleep 1; i=$((i+1)); done`,
    ].join("\n"),
    { timeoutMs: 360_000 },
  );
  if (r.code !== 0)
    throw new Error(
      `containerd in ${node.name} ${r.code === 9 ? "exited" : "did not serve its socket"}: ${r.stderr}\n${log()}`,
    );
  return {
    endpoint: CONTAINERD_ENDPOINT,
    podRange: containerdPodRange(node.podCidr),
    log,
    stop: async () => {
      await node.exec(`kill $(cat ${dom0Dir}/pid) 2>/dev/null; true`).catch(() => undefined);
    },
  };
}
