// `node dist/tools/node-install.js`: makes a Debian 12 Xen host a superfluid node in one command.
// The CRI front (the bundled shim) must answer before the kubelet starts, and the kubelet's pods
// include the cluster's own DaemonSets, so it runs from systemd rather than as a pod:
//   /opt/superfluid/            the bundled shim, its proto and koffi (REPO_ROOT layout)
//   superfluid-cri.service      node cri-shim.mjs --fallback-runtime-endpoint=<containerd>
//   kubelet.service.d drop-in   the kubelet starts after the front and waits for it
//   /etc/default/kubelet        --container-runtime-endpoint / --image-service-endpoint = the front
//   /etc/containerd/conf.d      containerd's CRI with runc and the systemd cgroup driver
// --root DIR writes everything under DIR (tests, image builds); --start also runs systemctl.
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../lib/paths.js";
import { SFXEN_LIB_RELATIVE } from "../cri-shim/src/hypervisor/xen-lean/sfxen-names.js";

export const UNIT_NAME = "superfluid-cri.service";
export const FRONT_SOCKET = "/run/superfluid/cri.sock";
export const CONTAINERD_SOCKET = "/run/containerd/containerd.sock";
const MANAGED = "# managed by superfluid node-install";

export interface InstallOptions {
  /** Filesystem root everything is written under ("/" on a real host). */
  root: string;
  /** Where the shim is installed on the host. */
  prefix: string;
  /** The node binary the unit runs. */
  node: string;
  fallbackEndpoint: string;
  /** Extra shim flags (e.g. --node-name=..., --kubeconfig=..., --bridge/--pod-cidr). */
  shimArgs: string[];
  /**
   * Copy this Node.js binary to <prefix>/bin/node and run the unit with it (a host without Node.js;
   * the official build needs only libc and libstdc++). `node` is then ignored.
   */
  copyNode?: boolean;
}

const q = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, "\\$1")}"`);

export function unitFile(
  o: Pick<InstallOptions, "prefix" | "node" | "fallbackEndpoint" | "shimArgs">,
): string {
  const exec = [
    o.node,
    join(o.prefix, "dist", "bundle", "cri-shim.mjs"),
    `--socket=${FRONT_SOCKET}`,
    `--fallback-runtime-endpoint=${o.fallbackEndpoint}`,
    ...o.shimArgs,
  ]
    .map(q)
    .join(" ");
  return `${MANAGED}
[Unit]
Description=superfluid CRI front: unikernel pods as Xen domains, every other pod through containerd
Documentation=file://${o.prefix}/README.md
# Xen's toolstack (xenstored, xenconsoled) and the Linux runtime come first; the kubelet after us.
After=network-online.target containerd.service xen.service xenstored.service xenconsoled.service proc-xen.mount
Wants=containerd.service network-online.target
Before=kubelet.service

[Service]
Type=simple
Environment=LOG_FORMAT=json
ExecStart=${exec}
# Domains are not our children: a restarted shim adopts them, so only the shim process is signalled.
KillMode=process
Restart=always
RestartSec=2
TimeoutStopSec=30
LimitNOFILE=1048576
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`;
}

export function kubeletDropIn(): string {
  return `${MANAGED}
[Unit]
# The kubelet's only CRI endpoint is the superfluid front, which hands ordinary pods to containerd.
After=${UNIT_NAME}
Wants=${UNIT_NAME}
`;
}

/** /etc/default/kubelet with our endpoints in KUBELET_EXTRA_ARGS (kubeadm's unit appends them last). */
export function kubeletDefaults(existing: string): string {
  const ours = `--container-runtime-endpoint=unix://${FRONT_SOCKET} --image-service-endpoint=unix://${FRONT_SOCKET}`;
  const lines = existing.split("\n").filter((l) => l !== "" && l !== MANAGED);
  const i = lines.findIndex((l) => /^KUBELET_EXTRA_ARGS=/.test(l));
  const strip = (v: string) =>
    v
      .replace(/--(container-runtime|image-service)-endpoint(=|\s+)\S+/g, "")
      .replace(/\s+/g, " ")
      .trim();
  const prior = i >= 0 ? strip(lines[i]!.replace(/^KUBELET_EXTRA_ARGS=/, "").replace(/^"(.*)"$/, "$1")) : "";
  // systemd's EnvironmentFile takes comments on their own line only.
  const line = `KUBELET_EXTRA_ARGS="${[prior, ours].filter(Boolean).join(" ")}"`;
  if (i >= 0) lines.splice(i, 1, MANAGED, line);
  else lines.push(MANAGED, line);
  return lines.join("\n") + "\n";
}

/** containerd's CRI plugin on, runc with the systemd cgroup driver (kubeadm's kubelet default). */
export function containerdConfig(): string {
  return `${MANAGED}
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
`;
}

/** The node's containerd config with our drop-in imported (relative imports resolve from its dir). */
export function containerdMainConfig(existing: string): string {
  // containerd resolves a relative import from the config's directory, but globs only when absolute.
  const want = `imports = ["conf.d/20-superfluid.toml"]`;
  if (existing.includes(want)) return existing;
  if (/^imports\s*=/m.test(existing))
    throw new Error(
      "/etc/containerd/config.toml has its own imports: add conf.d/20-superfluid.toml to them by hand",
    );
  const body = existing.trim() === "" ? "version = 2\n" : existing;
  return /^version\s*=.*$/m.test(body)
    ? body.replace(/^version\s*=.*$/m, (v) => `${v}\n${want} ${MANAGED}`)
    : `${want} ${MANAGED}\n${body}`;
}

/** Writes `text` unless the file already holds it; returns the path if it changed. */
function write(root: string, path: string, text: string, mode = 0o644): string | undefined {
  const full = join(root, path);
  if (existsSync(full) && readFileSync(full, "utf8") === text) return undefined;
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, text, { mode });
  return path;
}

/** Copies a file or tree unless every file is already identical; returns `label` if anything changed. */
function copy(src: string, dest: string, label: string): string | undefined {
  const same = (a: string, b: string): boolean => {
    if (!existsSync(b)) return false;
    if (statSync(a).isDirectory()) return readdirSync(a).every((n) => same(join(a, n), join(b, n)));
    return statSync(a).size === statSync(b).size && readFileSync(a).equals(readFileSync(b));
  };
  if (same(src, dest)) return undefined;
  cpSync(src, dest, { recursive: true });
  return label;
}

/** Writes every file; returns the host paths that changed (none on a second run). */
export function install(o: InstallOptions): string[] {
  const bundle = join(REPO_ROOT, "dist", "bundle", "cri-shim.mjs");
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run \`npm run build\` first`);
  const dest = join(o.root, o.prefix);
  mkdirSync(join(dest, "dist", "bundle"), { recursive: true });
  // The lean backend (the default) loads libsfxen.so from the same layout.
  const sfxen = join(REPO_ROOT, SFXEN_LIB_RELATIVE);
  if (!existsSync(sfxen)) throw new Error(`${sfxen} is missing: run \`make -C native\` first`);
  mkdirSync(dirname(join(dest, SFXEN_LIB_RELATIVE)), { recursive: true });
  const changed: (string | undefined)[] = [
    copy(bundle, join(dest, "dist", "bundle", "cri-shim.mjs"), `${o.prefix}/dist/bundle/cri-shim.mjs`),
    copy(join(REPO_ROOT, "cri-shim", "proto"), join(dest, "cri-shim", "proto"), `${o.prefix}/cri-shim/proto`),
    copy(sfxen, join(dest, SFXEN_LIB_RELATIVE), `${o.prefix}/${SFXEN_LIB_RELATIVE}`),
  ];
  // koffi stays outside the bundle; its native part is a per-platform package beside it.
  const modules = join(REPO_ROOT, "node_modules");
  const natives = existsSync(join(modules, "@koromix"))
    ? readdirSync(join(modules, "@koromix"))
        .filter((n) => n.startsWith("koffi-"))
        .map((n) => join("@koromix", n))
    : [];
  for (const m of ["koffi", ...natives])
    changed.push(
      copy(realpathSync(join(modules, m)), join(dest, "node_modules", m), `${o.prefix}/node_modules/${m}`),
    );
  // The node image carries no README; a checkout does.
  if (existsSync(join(REPO_ROOT, "README.md")))
    changed.push(copy(join(REPO_ROOT, "README.md"), join(dest, "README.md"), `${o.prefix}/README.md`));
  let node = o.node;
  if (o.copyNode) {
    node = join(o.prefix, "bin", "node");
    mkdirSync(join(dest, "bin"), { recursive: true });
    changed.push(copy(process.execPath, join(o.root, node), node));
  }
  const read = (path: string): string =>
    existsSync(join(o.root, path)) ? readFileSync(join(o.root, path), "utf8") : "";
  return [
    ...changed,
    write(o.root, `etc/systemd/system/${UNIT_NAME}`, unitFile({ ...o, node })),
    write(o.root, "etc/systemd/system/kubelet.service.d/20-superfluid.conf", kubeletDropIn()),
    write(o.root, "etc/default/kubelet", kubeletDefaults(read("etc/default/kubelet"))),
    write(o.root, "etc/containerd/conf.d/20-superfluid.toml", containerdConfig()),
    write(o.root, "etc/containerd/config.toml", containerdMainConfig(read("etc/containerd/config.toml"))),
  ].filter((p): p is string => p !== undefined);
}

/**
 * The systemctl calls that make a change take effect: reload, enable and start the front, restart
 * containerd and the kubelet. With nothing changed only `enable --now` (idempotent): restarting the
 * kubelet and containerd is not free. From a pod (the chart's node installer, with hostPID) they run
 * in the host's namespaces through nsenter on PID 1.
 */
export function startCommands(o: { inHost: boolean; changed: boolean }): string[][] {
  const calls = o.changed
    ? [["daemon-reload"], ["enable", "--now", UNIT_NAME], ["restart", "containerd", "kubelet"]]
    : [["enable", "--now", UNIT_NAME]];
  const host = ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--"];
  return calls.map((args) => [...(o.inHost ? host : []), "systemctl", ...args]);
}

const USAGE = `Usage: node dist/tools/node-install.js [--root DIR] [--prefix DIR] [--node PATH]
       [--fallback-runtime-endpoint EP] [--start] [-- SHIM_FLAGS...]
  --root DIR       write under DIR instead of / (default /)
  --prefix DIR     where the shim goes on the host (default /opt/superfluid)
  --node PATH      node binary for the unit (default: this one)
  --fallback-runtime-endpoint EP   containerd's socket (default unix://${CONTAINERD_SOCKET})
  --copy-node      copy this node binary to PREFIX/bin/node for the unit (a host without Node.js)
  --start          systemctl enable --now ${UNIT_NAME}; if anything changed also daemon-reload
                   first and restart containerd and the kubelet after
  --in-host        run those through nsenter on PID 1 (from a pod with hostPID, root at --root)
  SHIM_FLAGS       passed to the shim, e.g. --node-name=$(hostname) --kubeconfig=/etc/kubernetes/kubelet.conf`;

function main(): void {
  const { values, positionals } = parseArgs({
    options: {
      root: { type: "string", default: "/" },
      prefix: { type: "string", default: "/opt/superfluid" },
      node: { type: "string", default: process.execPath },
      "fallback-runtime-endpoint": { type: "string", default: `unix://${CONTAINERD_SOCKET}` },
      start: { type: "boolean", default: false },
      "copy-node": { type: "boolean", default: false },
      "in-host": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const written = install({
    root: values.root,
    prefix: values.prefix,
    node: values.node,
    fallbackEndpoint: values["fallback-runtime-endpoint"],
    shimArgs: positionals,
    copyNode: values["copy-node"],
  });
  for (const p of written) console.log(`wrote ${join(values.root, p)}`);
  if (written.length === 0) console.log("nothing changed");
  if (!values.start) {
    console.log(
      `next: systemctl daemon-reload && systemctl enable --now ${UNIT_NAME} && systemctl restart containerd kubelet`,
    );
    return;
  }
  for (const [cmd, ...args] of startCommands({ inHost: values["in-host"], changed: written.length > 0 }))
    execFileSync(cmd!, args, { stdio: "inherit" });
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    console.error(`node-install: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
