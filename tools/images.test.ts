// `npm run images`, for real: both images built twice from the same commit (same digests), pushed to
// a real registry (Debian's docker-registry) by the CLI in its own process (same digests again),
// their manifests and layers pulled back and read, then
// unpacked with lib/oci into a throwaway root and run there under chroot: the operator reconciles a
// UnikernelVM on the test apiserver; the shim loads koffi, stops at libxenlight without the host's
// Xen libraries, and reaches libxl with them mounted as the chart mounts them. The chart's default
// image references are the builder's.
import test from "ava";
import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { API_VERSION, UNIKERNELVM_PLURAL, type UnikernelVM } from "../api/index.js";
import { useCluster } from "../e2e/harness/ava.js";
import { runCommand } from "../e2e/harness/control-plane.js";
import { startRegistry, type TestRegistry } from "../e2e/harness/registry.js";
import { helmImageValues, pushProjectImages, type ImagesReport } from "../e2e/harness/project-images.js";
import { KubeClient, paths } from "../lib/kube/client.js";
import { freePort, waitFor } from "../lib/net.js";
import { buildContainerImage, RegistryClient } from "../lib/oci/index.js";
import { parseManifest, parseJsonDocument, MEDIA_TYPES } from "../lib/oci/media-types.js";
import { readTar } from "../lib/oci/tar.js";
import { unpackBudget, unpackLayer } from "../lib/oci/unpack.js";
import { k8sBinary, REPO_ROOT } from "../lib/paths.js";
import { managedTempDir, releaseTempDir, runAsync, startProcess } from "../lib/process.js";
import { podName } from "../operator/src/desired.js";
import { clusterReady, prepareNamespace } from "../operator/test/kubelet.js";
import { HOST_LIB_MOUNT, sharedLibraries } from "./images-content.js";
import {
  buildProjectImages,
  DEFAULT_REGISTRY,
  imageConfig,
  imageRepository,
  imageTags,
  sourceVersion,
  type ImageName,
  type ProjectImage,
  type SourceVersion,
} from "./project-images.js";

const cluster = useCluster(test, "images");
let registry: TestRegistry;
let version: SourceVersion;
let built: ProjectImage[];
let report: ImagesReport | undefined;
let work: string;
/** Per image: the unpacked root and the config as pulled back. */
const pulled = new Map<ImageName, { root: string; env: string[]; entrypoint: string[]; user: string }>();

test.before(async () => {
  version = await sourceVersion();
  built = await buildProjectImages(version);
  registry = await startRegistry();
  work = managedTempDir("sf-images-");
});
test.after.always(async () => {
  await registry?.stop();
  if (work) releaseTempDir(work);
});

const image = (name: ImageName) => built.find((b) => b.name === name)!.image;

test.serial("two builds from the same commit give the same digests; another commit another", async (t) => {
  const again = await buildProjectImages(version);
  for (const { name, image: second } of again) {
    const first = image(name);
    t.is(second.manifestDigest, first.manifestDigest, name);
    t.deepEqual(
      second.layers.map((l) => l.digest),
      first.layers.map((l) => l.digest),
    );
    const config = parseJsonDocument("config", first.blobs.get(first.configDigest)!);
    t.false("created" in config, "no build date in the config");
    t.false("history" in config);
  }
  // The runtime layer is one blob for both images.
  t.is(image("operator").layers[0]!.digest, image("cri-shim").layers[0]!.digest);
  // The commit is in the config (org.opencontainers.image.revision): another commit, another digest.
  const op = image("operator");
  const runtime = { ...op.layers[0]!, blob: op.blobs.get(op.layers[0]!.digest)! };
  const app = { ...op.layers[1]!, blob: op.blobs.get(op.layers[1]!.digest)! };
  const same = buildContainerImage([runtime, app], imageConfig("operator", version));
  const other = buildContainerImage(
    [runtime, app],
    imageConfig("operator", { ...version, commit: "0".repeat(40) }),
  );
  t.is(same.manifestDigest, op.manifestDigest);
  t.not(other.manifestDigest, op.manifestDigest);
});

async function layerPaths(blob: Buffer): Promise<Map<string, { type: string; mode: number; link: string }>> {
  const out = new Map<string, { type: string; mode: number; link: string }>();
  await readTar(Readable.from([blob]).pipe(createGunzip()), async (h) => {
    out.set(h.path.replace(/\/$/, ""), { type: h.type, mode: h.mode, link: h.linkTarget });
  });
  return out;
}

test.serial(
  "npm run images pushes to a real registry; pulled back, the layers hold Node, its libraries and the program",
  async (t) => {
    // The CLI, in its own process: the same digests as the in-process builds (reproducible again).
    report = await pushProjectImages(registry.host);
    t.true(report.pushed);
    t.deepEqual(
      report.images.map((i) => [i.name, i.digest]),
      built.map((b) => [b.name, b.image.manifestDigest]),
    );
    const client = new RegistryClient(registry.host, { plainHttp: true });
    const nodeLibs = (await sharedLibraries([process.execPath])).map((l) => basename(realpathSync(l)));
    t.true(nodeLibs.some((l) => l.startsWith("libc.so")));
    for (const { name, image: img } of built) {
      const repository = imageRepository(registry.host, name);
      const repoPath = repository.slice(registry.host.length + 1);
      t.deepEqual(
        report.images.find((i) => i.name === name)?.references,
        imageTags(version).map((tag) => `${repository}:${tag}`),
      );
      for (const tag of imageTags(version)) {
        const back = await client.getManifest(repoPath, tag, 1 << 20);
        t.is(back.digest, img.manifestDigest, `${name}:${tag}`);
      }
      const back = await client.getManifest(repoPath, imageTags(version)[0], 1 << 20);
      const manifest = parseManifest(parseJsonDocument("manifest", back.bytes), MEDIA_TYPES.ociManifest);
      const readBlob = async (digest: string) => {
        const chunks: Buffer[] = [];
        for await (const c of await client.getBlob(repoPath, digest)) chunks.push(c as Buffer);
        const bytes = Buffer.concat(chunks);
        t.is(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, digest);
        return bytes;
      };
      const config = parseJsonDocument("config", await readBlob(manifest.config.digest)).config as {
        Entrypoint: string[];
        Env: string[];
        User: string;
      };
      const root = join(work, `${name}-root`);
      await mkdir(root);
      const files = new Map<string, { type: string; mode: number; link: string }>();
      for (const layer of manifest.layers) {
        const bytes = await readBlob(layer.digest);
        for (const [p, e] of await layerPaths(bytes)) files.set(p, e);
        const file = join(work, layer.digest.slice("sha256:".length));
        await writeFile(file, bytes);
        await unpackLayer(
          file,
          layer.digest,
          root,
          unpackBudget({ maxUnpackedBytes: 1 << 30, maxEntries: 10_000 }),
        );
      }
      pulled.set(name, { root, env: config.Env, entrypoint: config.Entrypoint, user: config.User });

      const node = files.get("usr/bin/node");
      t.is(node?.type, "file");
      t.is(node!.mode & 0o111, 0o111, "node is executable");
      for (const lib of nodeLibs) t.true(files.has(`usr/lib/x86_64-linux-gnu/${lib}`), `${name} has ${lib}`);
      t.is(files.get("lib64")?.type, "symlink", "the loader's path as on the host");
      t.is(files.get("lib")?.link, "usr/lib");
      t.true(files.has(`opt/superfluid/dist/bundle/${name}.mjs`));
      t.deepEqual(config.Entrypoint, ["/usr/bin/node", `/opt/superfluid/dist/bundle/${name}.mjs`]);
      const xen = [...files.keys()].filter((p) => /libxen/.test(p));
      t.deepEqual(xen, [], "no Xen library: they come from the host");
      if (name === "cri-shim") {
        t.true(files.has("opt/superfluid/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node"));
        t.true(files.has("opt/superfluid/node_modules/koffi/package.json"));
        t.true(files.has("opt/superfluid/cri-shim/proto/api.proto"));
        t.true(files.has("opt/superfluid/native/build/libsfxen/libsfxen.so"), "the lean backend's library");
        t.is(files.get(HOST_LIB_MOUNT.slice(1))?.type, "directory");
        t.is(config.User, "0:0");
      } else {
        t.false(
          [...files.keys()].some((p) => p.includes("koffi")),
          "the operator needs no koffi",
        );
        t.is(config.User, "65532:65532");
      }
      t.log(
        `${name}: ${(manifest.layers.reduce((n, l) => n + l.size, 0) / 1e6).toFixed(1)} MB in ${manifest.layers.length} layers, ${files.size} entries`,
      );
    }
  },
);

/** The command line that runs the image's entrypoint in its unpacked root, as its user. */
function inImage(name: ImageName, args: string[]): { argv: string[]; env: NodeJS.ProcessEnv } {
  const p = pulled.get(name);
  if (!p) throw new Error(`${name} was not pulled (the push test failed)`);
  const env = Object.fromEntries(
    p.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  return { argv: [`--userspec=${p.user}`, p.root, ...p.entrypoint, ...args], env };
}

function runInImage(name: ImageName, args: string[]) {
  const { argv, env } = inImage(name, args);
  return runAsync("/usr/sbin/chroot", argv, { env, timeoutMs: 60_000 });
}

test.serial(
  "the operator image runs: --help, then it reconciles a UnikernelVM on the apiserver",
  async (t) => {
    const r = await runInImage("operator", ["--help"]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^superfluid-operator /);

    const c = await clusterReady(cluster);
    const client = new KubeClient(c.cp.kubeConfig);
    await prepareNamespace(client, c.namespace);
    const kubeconfig = await c.cp.kubectl(["config", "view", "--raw", "--flatten", "--minify"]);
    t.is(kubeconfig.code, 0, kubeconfig.stderr);
    await writeFile(join(pulled.get("operator")!.root, "tmp", "kubeconfig"), kubeconfig.stdout, {
      mode: 0o644,
    });
    const port = await freePort();
    const run = inImage("operator", [
      "--kubeconfig=/tmp/kubeconfig",
      `--namespace=${c.namespace}`,
      "--leader-elect=false",
      `--http-port=${port}`,
      "--workers=2",
    ]);
    const proc = startProcess("operator-image", "/usr/sbin/chroot", run.argv, {
      env: run.env,
      logPath: join(work, "operator.log"),
    });
    try {
      await waitFor(
        "the operator's /readyz",
        async () => {
          if (proc.child.exitCode !== null)
            throw new Error(`exited: ${await readFile(proc.logPath, "utf8")}`);
          const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
          return res?.status === 200 ? true : undefined;
        },
        120_000,
        250,
      );
      const vmPath = paths.customObject(UNIKERNELVM_PLURAL, c.namespace, "from-image");
      const vm = await client.apply<UnikernelVM>(
        vmPath,
        {
          apiVersion: API_VERSION,
          kind: "UnikernelVM",
          metadata: { name: "from-image" },
          spec: { image: "registry.local:5000/hello:1", memory: "4Mi" },
        },
        "superfluid-test",
      );
      const pod = await waitFor(
        "the pod the operator in the image made",
        async () =>
          client
            .request<{ metadata: { name: string } }>({
              method: "GET",
              path: `/api/v1/namespaces/${c.namespace}/pods/${podName(vm)}`,
            })
            .catch(() => undefined),
        60_000,
        250,
      );
      t.is(pod.metadata.name, podName(vm));
      const log = await readFile(proc.logPath, "utf8");
      t.regex(log, /"level":"info"/, "it logs JSON, as the image's LOG_FORMAT says");
    } finally {
      await proc.stop();
      client.close();
    }
    t.is(await proc.exited, 0, "SIGTERM ends it cleanly");
  },
);

test.serial(
  "the node image runs: koffi loads; libxenlight comes from the host's mount, then libxl wants dom0",
  async (t) => {
    const h = await runInImage("cri-shim", ["--help"]);
    t.is(h.code, 0, h.stderr);
    t.regex(h.stdout, /superfluid CRI shim: serves CRI v1/);

    const args = [
      "--socket=/tmp/cri.sock",
      "--state-dir=/tmp/state",
      "--image-dir=/tmp/images",
      "--kernel-cache=/tmp/kernels",
    ];
    // Without the host's libraries: koffi's native module loaded, the Xen library is not there.
    const bare = inImage("cri-shim", args);
    const r1 = await runInImage("cri-shim", args);
    t.is(r1.code, 1);
    t.regex(
      r1.stderr,
      /cannot load libxentoollog\.so\.1, the host's Xen toolstack .*Failed to load shared library/,
    );
    // With the host's library directory mounted read-only where the image looks (the chart's hostPath).
    const root = pulled.get("cri-shim")!.root;
    const script = `mount --bind -o ro /usr/lib/x86_64-linux-gnu "$0${HOST_LIB_MOUNT}" && exec /usr/sbin/chroot "$@"`;
    const r2 = await runAsync("unshare", ["--mount", "sh", "-c", script, root, ...bare.argv], {
      env: bare.env,
      timeoutMs: 60_000,
    });
    t.is(r2.code, 1);
    t.notRegex(r2.stderr, /Failed to load shared library/);
    t.regex(r2.stderr, /cannot open libxl .*libxl_ctx_alloc: cannot open libxc handle/s);
  },
);

test.serial(
  "the node image's installer (the chart's node installer) writes a host install whose shim runs",
  async (t) => {
    const p = pulled.get("cri-shim");
    if (!p) return t.fail("cri-shim was not pulled (the push test failed)");
    const env = Object.fromEntries(
      p.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
    );
    const node = p.entrypoint[0]!;
    const r = await runAsync(
      "/usr/sbin/chroot",
      [
        `--userspec=${p.user}`,
        p.root,
        node,
        "/opt/superfluid/dist/bundle/node-install.mjs",
        "--root=/tmp/host",
        "--copy-node",
        "--",
        "--node-name=xen-img",
        "--kubeconfig=/var/lib/superfluid/agent/kubeconfig",
      ],
      { env, timeoutMs: 60_000 },
    );
    t.is(r.code, 0, r.stderr);
    const host = join(p.root, "tmp", "host");
    const unit = await readFile(join(host, "etc", "systemd", "system", "superfluid-cri.service"), "utf8");
    t.regex(
      unit,
      /^ExecStart=\/opt\/superfluid\/bin\/node \/opt\/superfluid\/dist\/bundle\/cri-shim\.mjs .*--node-name=xen-img/m,
    );
    // What it put on the "host" runs there: its Node.js, the shim bundle, proto and koffi beside it.
    const help = await runAsync(
      join(host, "opt", "superfluid", "bin", "node"),
      [join(host, "opt", "superfluid", "dist", "bundle", "cri-shim.mjs"), "--help"],
      { timeoutMs: 60_000 },
    );
    t.is(help.code, 0, help.stderr);
    t.regex(help.stdout, /superfluid CRI shim: serves CRI v1/);
  },
);

test.serial("the chart's default images are the ones npm run images names", async (t) => {
  const chart = parseYaml(await readFile(join(REPO_ROOT, "charts/superfluid/Chart.yaml"), "utf8")) as {
    appVersion: string;
  };
  const v = await sourceVersion();
  t.is(chart.appVersion, v.version, "the chart's appVersion is the package version (the images' first tag)");
  const render = async (set: string[] = []) => {
    const r = await runCommand(k8sBinary("helm"), [
      "template",
      "sf",
      join(REPO_ROOT, "charts/superfluid"),
      ...set.flatMap((s) => ["--set", s]),
    ]);
    t.is(r.code, 0, r.stderr);
    const images: Record<string, string> = {};
    for (const doc of parseAllDocuments(r.stdout)) {
      const o = doc.toJS() as {
        kind?: string;
        spec?: { template?: { spec?: { containers?: Array<{ image: string }> } } };
      };
      const cs = o?.spec?.template?.spec?.containers;
      if (o?.kind === "Deployment" || o?.kind === "DaemonSet") images[o.kind] = cs![0]!.image;
    }
    return images;
  };
  const tag = imageTags(v)[0];
  t.deepEqual(await render(), {
    Deployment: `${imageRepository(DEFAULT_REGISTRY, "operator")}:${tag}`,
    DaemonSet: `${imageRepository(DEFAULT_REGISTRY, "cri-shim")}:${tag}`,
  });
  // Pinned by the digests npm run images printed for the test registry (what the e2e cluster uses).
  if (report === undefined) return t.fail("npm run images did not run (the push test failed)");
  const sets = helmImageValues(report).filter((a) => a !== "--set");
  const pinned = (name: ImageName) => `${imageRepository(registry.host, name)}@${image(name).manifestDigest}`;
  t.deepEqual(await render(sets), { Deployment: pinned("operator"), DaemonSet: pinned("cri-shim") });
  // A values file whose image fields the chart's schema refuses: helm names each field.
  const valuesFile = join(work, "bad-values.yaml");
  await writeFile(
    valuesFile,
    "operator:\n  image:\n    digest: sha256:nothex\nshim:\n  image:\n    tag: 'v1 with spaces'\n",
  );
  const bad = await runCommand(k8sBinary("helm"), [
    "template",
    "sf",
    join(REPO_ROOT, "charts/superfluid"),
    "-f",
    valuesFile,
  ]);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /operator[./]image[./]digest/);
  t.regex(bad.stderr, /shim[./]image[./]tag/);
});

test("npm run images refuses a bad command line before building anything", async (t) => {
  const cli = (args: string[]) =>
    runAsync(process.execPath, [join(REPO_ROOT, "dist/tools/images.js"), ...args]);
  for (const [args, why] of [
    [[], /--registry is required/],
    [["--registry", "http://localhost:5000"], /--registry: expected host\[:port\]\[\/path\]/],
    [["--no-push", "--only", "kernel"], /--only: unknown image "kernel"; known: operator, cri-shim/],
    [["--registry", "localhost:5000", "--user", "nopassword"], /--user must be user:password/],
  ] as const) {
    const r = await cli([...args]);
    t.is(r.code, 2, args.join(" "));
    t.regex(r.stderr, why);
  }
});
