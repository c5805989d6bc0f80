// Stand-ins for the Linux images cri-tools' critest pulls (registry.k8s.io/e2e-test-images/*,
// gcr.io/k8s-staging-cri-tools/*), which this machine cannot reach. Each is Debian's static busybox
// with its applets, a passwd and group, under the repository path and tag critest asks for, pushed
// to a test registry; a containerd whose mirrors for registry.k8s.io and gcr.io point at that
// registry then serves critest's references unchanged. The web images run busybox httpd on port 80
// in place of nginx/httpd. Specs that need the real images' contents (an nginx master process, a
// fixed digest, preset users) fail the same way on any runtime given these stand-ins; critest runs
// compare a runtime against containerd on the same images, never against a pass count alone.
import { buildContainerImage, pushImage } from "../../lib/oci/index.js";
import { busyboxLayer } from "./busybox-image.js";

const WEB = [
  "e2e-test-images/nginx:1.14-2",
  "e2e-test-images/httpd:2.4.39-4",
  "k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
];
const PLAIN = [
  "e2e-test-images/busybox:1.29-2",
  "e2e-test-images/nonewprivs:1.3",
  "k8s-staging-cri-tools/test-image-1:latest",
  "k8s-staging-cri-tools/test-image-2:latest",
  "k8s-staging-cri-tools/test-image-3:latest",
  "k8s-staging-cri-tools/test-image-latest:latest",
  "k8s-staging-cri-tools/test-image-predefined-group:latest",
  "k8s-staging-cri-tools/test-image-tag:test",
  "k8s-staging-cri-tools/test-image-tags:1",
  "k8s-staging-cri-tools/test-image-tags:2",
  "k8s-staging-cri-tools/test-image-tags:3",
  "k8s-staging-cri-tools/test-image-user-uid:latest",
  "k8s-staging-cri-tools/test-image-user-uid-group:latest",
  "k8s-staging-cri-tools/test-image-user-username:latest",
  "k8s-staging-cri-tools/test-image-user-username-group:latest",
];
/** The sandbox (pause) image the test containerd is configured with, under the same registry. */
export const CRITEST_PAUSE = "pause:3.10";

/** The registries critest names, for a containerd's mirrors. */
export const CRITEST_REGISTRIES = ["registry.k8s.io", "gcr.io"];

/** Builds every stand-in and pushes it to `registryHost` (plain HTTP). */
export async function pushCritestImages(registryHost: string): Promise<void> {
  const layer = busyboxLayer([
    { path: "www", type: "directory", mode: 0o755 },
    {
      path: "www/index.html",
      data: Buffer.from("<html><body>critest stand-in</body></html>\n"),
      mode: 0o644,
    },
  ]);
  const images: [string, string[]][] = [
    ...WEB.map((n): [string, string[]] => [n, ["httpd", "-f", "-p", "80", "-h", "/www"]]),
    ...PLAIN.map((n): [string, string[]] => [n, ["sh"]]),
    [CRITEST_PAUSE, ["sleep", "2147483647"]],
  ];
  for (const [name, cmd] of images) {
    // A label per repository: each is its own image (own id), as the real ones are; the tags of
    // one repository (test-image-tags:1, :2, :3) are one image, as critest expects.
    const image = buildContainerImage([layer], {
      entrypoint: [],
      cmd,
      env: ["PATH=/bin"],
      labels: { "test.superfluid.dev/stands-in-for": name.split(":")[0]! },
    });
    await pushImage(image, `${registryHost}/${name}`, { plainHttp: true });
  }
}
