// The Linux container images of a cluster whose Xen nodes run containerd beside the shim, pushed to
// the cluster's registry: the pod sandbox image (busybox sleeping, in place of pause), a small
// DaemonSet image (busybox serving HTTP), and kube-proxy packed by the project's image tool
// (tools/kube-proxy-image.ts: the kube-proxy binary setup fetched, Debian's iptables).
import { basename, join } from "node:path";
import { buildContainerImage, pushImage } from "../../lib/oci/index.js";
import { K8S_BIN_DIR, REPO_ROOT } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import { busyboxLayer } from "../harness/busybox-image.js";
import type { TestRegistry } from "../harness/registry.js";
import { REGISTRY_PORT_IN_DOM0 } from "./images.js";

const IN_DOM0 = `localhost:${REGISTRY_PORT_IN_DOM0}/superfluid-e2e`;
/** A busybox that serves /tmp/www on :8080 (its index names the pod's host name). */
export const BUSYBOX_WEB_IMAGE = `${IN_DOM0}/busybox-web:1`;
export const KUBE_PROXY_IMAGE = `${IN_DOM0}/kube-proxy:${basename(K8S_BIN_DIR)}`;

export interface LinuxImages {
  kubeProxy: { ref: string; digest: string; sizeBytes: number; unpackedBytes: number; files: number };
  busyboxWeb: string;
}

export async function pushLinuxImages(registry: TestRegistry): Promise<LinuxImages> {
  const hostRef = (ref: string) => ref.replace(`localhost:${REGISTRY_PORT_IN_DOM0}`, registry.host);
  const layer = busyboxLayer();
  const pause = buildContainerImage([layer], { entrypoint: ["/bin/sleep"], cmd: ["2147483647"] });
  await pushImage(pause, hostRef(`${IN_DOM0}/pause:3.10`), { plainHttp: true });
  const web = buildContainerImage([layer], {
    entrypoint: ["/bin/sh", "-c"],
    cmd: [
      'mkdir -p /tmp/www && echo "linux pod $(hostname)" >/tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www',
    ],
    env: ["PATH=/bin"],
  });
  await pushImage(web, hostRef(BUSYBOX_WEB_IMAGE), { plainHttp: true });
  const r = await runAsync(
    process.execPath,
    [
      join(REPO_ROOT, "dist", "tools", "kube-proxy-image.js"),
      "--kube-proxy",
      join(K8S_BIN_DIR, "kube-proxy"),
      "--tag",
      hostRef(KUBE_PROXY_IMAGE),
      "--insecure",
    ],
    { timeoutMs: 300_000 },
  );
  if (r.code !== 0) throw new Error(`building/pushing the kube-proxy image failed: ${r.stderr}`);
  const kp = JSON.parse(r.stdout) as Omit<LinuxImages["kubeProxy"], "ref">;
  return { kubeProxy: { ...kp, ref: KUBE_PROXY_IMAGE }, busyboxWeb: BUSYBOX_WEB_IMAGE };
}
