// What goes into the project's own images (`npm run images`): the operator's and the node
// component's (the CRI shim with its node agent). Each is two layers:
//   1. the runtime, the same in both (so a registry and a node store it once): this machine's Node
//      binary (process.execPath), the shared libraries it and koffi's native module need (found
//      with ldd, copied with the host's symlinks: /lib -> usr/lib, the dynamic loader), a passwd
//      with root and nonroot (65532), /tmp;
//   2. the program under /opt/superfluid (APP_ROOT, two directories above the bundle, which is
//      where lib/paths.ts's REPO_ROOT lands): its esbuild bundle from dist/bundle/, and for the
//      shim koffi (JavaScript + the linux-x64 prebuilt .node), the CRI proto and the lean backend's
//      libsfxen.so.
// The node image carries no Xen library: libxenlight and its dependencies, the hotplug scripts and
// the CNI plugins come from the host's Xen install (docs/images.md says why).
import { execFile } from "node:child_process";
import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import { join, posix, relative } from "node:path";
import { promisify } from "node:util";
import type { TarWriteEntry } from "../lib/oci/index.js";
import { REPO_ROOT } from "../lib/paths.js";
import { SFXEN_LIB_RELATIVE } from "../cri-shim/src/hypervisor/xen-lean/sfxen-names.js";

const exec = promisify(execFile);

export const APP_ROOT = "/opt/superfluid";
/** Where the node image expects the host's library directory (a read-only hostPath mount). */
export const HOST_LIB_MOUNT = "/host/usr/lib/x86_64-linux-gnu";
export const NODE_IN_IMAGE = "/usr/bin/node";

/** The shared libraries (resolved paths as the loader finds them, the loader itself included). */
export function parseLdd(output: string, binary: string): string[] {
  const libs: string[] = [];
  for (const line of output.split("\n")) {
    const t = line.trim();
    if (t === "" || t.startsWith("linux-vdso") || t.startsWith("statically linked")) continue;
    if (/=> not found/.test(t)) throw new Error(`${binary}: shared library ${t.split(" ")[0]} not found`);
    const m = /=>\s+(\/\S+)\s+\(/.exec(t) ?? /^(\/\S+)\s+\(/.exec(t);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

export async function sharedLibraries(binaries: string[]): Promise<string[]> {
  const all = new Set<string>();
  for (const b of binaries) {
    const { stdout } = await exec("ldd", [b]);
    for (const lib of parseLdd(stdout, b)) all.add(lib);
  }
  return [...all].sort();
}

const imagePath = (hostPath: string) => hostPath.replace(/^\/+/, "");

/**
 * Entries that reproduce `path` of this machine in the image at the same place: every symlink met
 * on the way (a directory link such as /lib -> usr/lib, or a file link) as a symlink, then the file.
 */
export async function hostPathEntries(
  path: string,
  out: Map<string, TarWriteEntry>,
  hops = 0,
): Promise<void> {
  if (hops > 40) throw new Error(`${path}: too many symlinks`);
  const parts = path.split("/").filter(Boolean);
  let cur = "";
  for (let i = 0; i < parts.length; i++) {
    cur = `${cur}/${parts[i]}`;
    const st = await lstat(cur);
    if (st.isSymbolicLink()) {
      const target = await readlink(cur);
      out.set(imagePath(cur), { path: imagePath(cur), type: "symlink", linkTarget: target });
      const resolved = posix.resolve(posix.dirname(cur), target);
      return hostPathEntries(posix.join(resolved, ...parts.slice(i + 1)), out, hops + 1);
    }
    if (i === parts.length - 1) {
      if (!st.isFile()) throw new Error(`${cur}: not a regular file`);
      out.set(imagePath(cur), { path: imagePath(cur), data: await readFile(cur), mode: st.mode & 0o755 });
    }
  }
}

/** Every file under `dir` that `keep` accepts (path relative to dir), placed under `into`. */
export async function treeEntries(
  dir: string,
  into: string,
  keep: (rel: string) => boolean,
): Promise<TarWriteEntry[]> {
  const out: TarWriteEntry[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const abs = join(d, name);
      const rel = relative(dir, abs);
      const st = await stat(abs);
      if (st.isDirectory()) await walk(abs);
      else if (st.isFile() && keep(rel))
        out.push({
          path: imagePath(posix.join(into, rel)),
          data: await readFile(abs),
          mode: st.mode & 0o755,
        });
    }
  };
  await walk(dir);
  return out;
}

const ETC_PASSWD =
  "root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n";
const ETC_GROUP = "root:x:0:\nnonroot:x:65532:\n";

/** koffi's package: its JavaScript and package.json, and the glibc x64 prebuilt it loads. */
export const KOFFI_PACKAGES: Array<{ dir: string; keep: (rel: string) => boolean }> = [
  {
    dir: "koffi",
    keep: (rel) => /\.(c?js|json)$/.test(rel) && !rel.startsWith("doc/") && !rel.startsWith("vendor/"),
  },
  {
    dir: "@koromix/koffi-linux-x64",
    keep: (rel) => rel === "package.json" || rel === "index.js" || rel === "linux_x64/koffi.node",
  },
];

/** The runtime layer: Node, the libraries it and koffi's native module load, passwd, /tmp. */
export async function runtimeEntries(nodeBinary = process.execPath): Promise<TarWriteEntry[]> {
  const koffiNative = join(REPO_ROOT, "node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node");
  const files = new Map<string, TarWriteEntry>();
  for (const lib of await sharedLibraries([nodeBinary, koffiNative])) await hostPathEntries(lib, files);
  const node = await stat(nodeBinary);
  return [
    ...files.values(),
    { path: imagePath(NODE_IN_IMAGE), data: await readFile(nodeBinary), mode: node.mode & 0o755 },
    { path: "etc/passwd", data: Buffer.from(ETC_PASSWD), mode: 0o644 },
    { path: "etc/group", data: Buffer.from(ETC_GROUP), mode: 0o644 },
    { path: "tmp", type: "directory", mode: 0o1777 },
  ];
}

async function bundle(name: string): Promise<TarWriteEntry> {
  const file = join(REPO_ROOT, "dist", "bundle", `${name}.mjs`);
  const data = await readFile(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") throw new Error(`${file} is missing: run npm run build first`);
    throw err;
  });
  return { path: imagePath(`${APP_ROOT}/dist/bundle/${name}.mjs`), data, mode: 0o644 };
}

/** The lean backend's libsfxen.so where the bundle looks for it (it links the host's Xen libraries). */
async function sfxenEntry(): Promise<TarWriteEntry> {
  const file = join(REPO_ROOT, SFXEN_LIB_RELATIVE);
  const data = await readFile(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") throw new Error(`${file} is missing: run make -C native first`);
    throw err;
  });
  return { path: imagePath(`${APP_ROOT}/${SFXEN_LIB_RELATIVE}`), data, mode: 0o755 };
}

export async function operatorEntries(): Promise<TarWriteEntry[]> {
  return [await bundle("operator")];
}

export async function shimEntries(): Promise<TarWriteEntry[]> {
  const koffi: TarWriteEntry[] = [];
  for (const p of KOFFI_PACKAGES)
    koffi.push(
      ...(await treeEntries(
        join(REPO_ROOT, "node_modules", p.dir),
        `${APP_ROOT}/node_modules/${p.dir}`,
        p.keep,
      )),
    );
  return [
    await bundle("cri-shim"),
    await bundle("node-agent-credentials"),
    await bundle("node-install"),
    ...koffi,
    ...(await treeEntries(join(REPO_ROOT, "cri-shim", "proto"), `${APP_ROOT}/cri-shim/proto`, (rel) =>
      rel.endsWith(".proto"),
    )),
    await sfxenEntry(),
    { path: imagePath(HOST_LIB_MOUNT), type: "directory", mode: 0o755 },
  ];
}
