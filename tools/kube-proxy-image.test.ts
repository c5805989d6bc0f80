// The kube-proxy image (tools/kube-proxy-image.ts), for real: built from the kube-proxy binary setup
// fetched and this machine's iptables, unpacked with lib/oci into a throwaway root, and run there
// under chroot in a fresh network namespace (nothing on the host's tables changes): kube-proxy
// starts and prints its version; iptables writes and lists the kind of rules kube-proxy writes
// (comment, mark, DNAT, MASQUERADE, statistic) with the image's own extensions and libraries.
import test from "ava";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { unpackBudget, unpackLayer } from "../lib/oci/unpack.js";
import { K8S_BIN_DIR } from "../lib/paths.js";
import { managedTempDir, releaseTempDir, runAsync } from "../lib/process.js";
import {
  buildKubeProxyImage,
  hostXtablesMulti,
  IPTABLES_NAMES,
  KUBE_PROXY_IN_IMAGE,
} from "./kube-proxy-image.js";

const KUBE_PROXY = join(K8S_BIN_DIR, "kube-proxy");

test("the image runs kube-proxy and the host's iptables backend from its own files", async (t) => {
  if (!existsSync(KUBE_PROXY)) return t.fail(`${KUBE_PROXY} is missing: run npm run setup`);
  const image = await buildKubeProxyImage(KUBE_PROXY);
  t.is(image.layers.length, 1);
  const layer = image.layers[0]!;
  const multi = await hostXtablesMulti();
  t.true(layer.paths.includes(multi.slice(1)), `${multi} is in the image`);
  for (const n of IPTABLES_NAMES) t.true(layer.paths.includes(`usr/sbin/${n}`), `${n} is in the image`);
  t.true(layer.paths.includes(KUBE_PROXY_IN_IMAGE.slice(1)));
  t.true(layer.size < 40e6, `compressed ${layer.size} bytes`);
  t.log(
    `kube-proxy image: ${layer.size} bytes compressed, ${layer.contentBytes} unpacked, ${layer.paths.length} files`,
  );

  const work = managedTempDir("sf-kube-proxy-image-");
  try {
    const blob = join(work, "layer.tar.gz");
    await writeFile(blob, image.blobs.get(layer.digest)!);
    const root = join(work, "root");
    await mkdir(root);
    await unpackLayer(
      blob,
      layer.digest,
      root,
      unpackBudget({ maxUnpackedBytes: 1 << 30, maxEntries: 10_000 }),
    );
    const inImage = (args: string[]) =>
      runAsync("unshare", ["--net", "/usr/sbin/chroot", root, ...args], {
        env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
        timeoutMs: 60_000,
      });
    const version = await inImage([KUBE_PROXY_IN_IMAGE, "--version"]);
    t.is(version.code, 0, version.stderr);
    t.regex(version.stdout, /^Kubernetes v\d+\.\d+\.\d+/);
    const rules = [
      ["-t", "nat", "-N", "KUBE-SERVICES"],
      ["-t", "nat", "-N", "KUBE-SEP-TEST"],
      [
        "-t",
        "nat",
        "-A",
        "KUBE-SEP-TEST",
        "-m",
        "comment",
        "--comment",
        "ns/svc",
        "-p",
        "tcp",
        "-j",
        "DNAT",
        "--to-destination",
        "10.244.8.2:8080",
      ],
      [
        "-t",
        "nat",
        "-A",
        "KUBE-SERVICES",
        "-d",
        "10.96.0.10/32",
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.5",
        "-j",
        "KUBE-SEP-TEST",
      ],
      ["-t", "nat", "-A", "POSTROUTING", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "MASQUERADE"],
    ];
    // One network namespace for the whole sequence: the host's shell runs each step chrooted.
    const q = (a: string) => `'${a}'`;
    const script = [
      ...rules.map((r) => `chroot ${q(root)} iptables -w ${r.map(q).join(" ")} || exit 1`),
      `chroot ${q(root)} iptables-save -t nat >${q(join(work, "saved"))} || exit 2`,
      `chroot ${q(root)} iptables-restore --test <${q(join(work, "saved"))} || exit 3`,
      `cat ${q(join(work, "saved"))}`,
    ].join("\n");
    const run = await runAsync("unshare", ["--net", "sh", "-c", script], { timeoutMs: 60_000 });
    t.is(run.code, 0, `iptables in the image (1: a rule, 2: save, 3: restore): ${run.stderr}`);
    t.regex(run.stdout, /--to-destination 10\.244\.8\.2:8080/);
    t.regex(run.stdout, /--probability 0\.5/);
  } finally {
    releaseTempDir(work);
  }
});
