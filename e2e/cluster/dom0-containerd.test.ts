// The dom0 containerd's configuration as Debian's containerd reads it (`containerd config dump`), and
// its pod address range: inside the node's subnet, clear of the addresses the shim hands out first.
import test from "ava";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { managedTempDir, releaseTempDir, runAsync } from "../../lib/process.js";
import { CONTAINERD_BINARY } from "../harness/containerd.js";
import { inCidr, podNetwork } from "../xen-node/pod-network.js";
import {
  CONTAINERD_POD_ADDRESSES,
  containerdCniConfig,
  containerdConfig,
  containerdPodRange,
  PAUSE_IMAGE,
} from "./dom0-containerd.js";

test("containerd reads the config: overlayfs, runc, the registry mirror, the CNI dir", async (t) => {
  const dir = managedTempDir("sf-dom0-containerd-");
  try {
    writeFileSync(join(dir, "config.toml"), containerdConfig("/mnt/host/containerd/cni"));
    const r = await runAsync(CONTAINERD_BINARY, ["--config", join(dir, "config.toml"), "config", "dump"], {
      timeoutMs: 60_000,
    });
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /snapshotter = "overlayfs"/);
    t.regex(r.stdout, /runtime_type = "io.containerd.runc.v2"/);
    t.true(r.stdout.includes(`sandbox_image = "${PAUSE_IMAGE}"`));
    t.regex(r.stdout, /endpoint = \["http:\/\/localhost:5000"\]/);
    t.regex(r.stdout, /conf_dir = "\/mnt\/host\/containerd\/cni"/);
  } finally {
    releaseTempDir(dir);
  }
});

test("containerd's pods take the top of the node's pod subnet", (t) => {
  for (const prefix of [21, 24]) {
    const net = podNetwork(1, prefix);
    const [first, last] = containerdPodRange(net.cidr);
    t.true(inCidr(first, net.cidr) && inCidr(last, net.cidr));
    const n = (ip: string) => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
    t.is(n(last) - n(first) + 1, CONTAINERD_POD_ADDRESSES);
    t.is(n(last), n(net.cidr.split("/")[0]!) + 2 ** (32 - prefix) - 2, "the last host address");
    const cni = JSON.parse(
      containerdCniConfig({ bridge: "xenbr0", podCidr: net.cidr, dom0Ip: net.gateway }),
    ) as { plugins: Array<{ bridge: string; ipam: { ranges: Array<Array<Record<string, string>>> } }> };
    t.is(cni.plugins[0]!.bridge, "xenbr0");
    t.deepEqual(cni.plugins[0]!.ipam.ranges[0]![0], {
      subnet: net.cidr,
      rangeStart: first,
      rangeEnd: last,
      gateway: net.gateway,
    });
  }
});
