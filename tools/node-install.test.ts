// The node installer, written into a temp root: the unit passes `systemd-analyze verify`, Debian's
// containerd reads the config it leaves (CRI on, runc with the systemd cgroup driver), the kubelet's
// defaults point at the front and keep the host's own flags, a second run changes nothing, and the
// installed bundle starts from its new place.
import test from "ava";
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { FRONT_SOCKET, install, startCommands, UNIT_NAME } from "./node-install.js";

const run = promisify(execFile);

test("node-install: a unit systemd accepts, configs containerd and the kubelet read", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "sf-node-install-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "etc", "containerd"), { recursive: true });
  copyFileSync("/etc/containerd/config.toml", join(root, "etc", "containerd", "config.toml"));
  mkdirSync(join(root, "etc", "default"), { recursive: true });
  const hostDefaults = `KUBELET_EXTRA_ARGS="--node-ip=192.0.2.5 --container-runtime-endpoint=unix:///var/run/containerd/containerd.sock"\n`;
  writeFileSync(join(root, "etc", "default", "kubelet"), hostDefaults);
  const opts = {
    root,
    prefix: "/opt/superfluid",
    node: process.execPath,
    fallbackEndpoint: "unix:///run/containerd/containerd.sock",
    shimArgs: ["--node-name=xen-a"],
  };
  install(opts);

  const unitPath = join(root, "etc", "systemd", "system", UNIT_NAME);
  const verify = await run("systemd-analyze", ["verify", unitPath]).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
  t.is(verify.code, 0, verify.out);
  t.is(verify.out.trim(), "", "no warning from systemd-analyze");
  const unit = readFileSync(unitPath, "utf8");
  t.regex(unit, /--fallback-runtime-endpoint=unix:\/\/\/run\/containerd\/containerd\.sock --node-name=xen-a/);
  t.regex(unit, /^Before=kubelet\.service$/m);
  t.regex(unit, /^KillMode=process$/m);

  const dump = await run("containerd", [
    "--config",
    join(root, "etc", "containerd", "config.toml"),
    "config",
    "dump",
  ]);
  t.regex(dump.stdout, /SystemdCgroup = true/);
  t.notRegex(dump.stdout, /disabled_plugins = \[.*cri.*\]/);

  const defaults = () => readFileSync(join(root, "etc", "default", "kubelet"), "utf8");
  const extra = /^KUBELET_EXTRA_ARGS="(.*)"$/m.exec(defaults())?.[1] ?? "";
  t.deepEqual(extra.split(" "), [
    "--node-ip=192.0.2.5",
    `--container-runtime-endpoint=unix://${FRONT_SOCKET}`,
    `--image-service-endpoint=unix://${FRONT_SOCKET}`,
  ]);
  const before = {
    defaults: defaults(),
    containerd: readFileSync(join(root, "etc", "containerd", "config.toml"), "utf8"),
  };
  t.deepEqual(install(opts), [], "a second run reports no change");
  t.is(defaults(), before.defaults, "a second run changes nothing");
  t.is(readFileSync(join(root, "etc", "containerd", "config.toml"), "utf8"), before.containerd);

  // The installed bundle loads from its new place (proto and koffi found there): it answers --help.
  const help = await run(process.execPath, [
    join(root, "opt", "superfluid", "dist", "bundle", "cri-shim.mjs"),
    "--help",
  ]);
  t.regex(help.stdout, /--fallback-runtime-endpoint/);
  // The default backend's library beside it, where the bundle's REPO_ROOT layout looks.
  t.true(existsSync(join(root, "opt", "superfluid", "native", "build", "libsfxen", "libsfxen.so")));
});

test("node-install --copy-node: the unit runs its own copy of Node.js, which runs; a changed shim flag is a change", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "sf-node-install-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const opts = {
    root,
    prefix: "/opt/superfluid",
    node: "/nonexistent/node",
    fallbackEndpoint: "unix:///run/containerd/containerd.sock",
    shimArgs: ["--node-name=xen-b", "--kubeconfig=/var/lib/superfluid/agent/kubeconfig"],
    copyNode: true,
  };
  const first = install(opts);
  t.true(first.includes("/opt/superfluid/bin/node"));
  const unit = readFileSync(join(root, "etc", "systemd", "system", UNIT_NAME), "utf8");
  t.regex(unit, /^ExecStart=\/opt\/superfluid\/bin\/node \/opt\/superfluid\/dist\/bundle\/cri-shim\.mjs /m);
  t.regex(unit, /--kubeconfig=\/var\/lib\/superfluid\/agent\/kubeconfig/);
  const copied = await run(join(root, "opt", "superfluid", "bin", "node"), [
    "-e",
    "process.stdout.write(process.version)",
  ]);
  t.is(copied.stdout, process.version);
  t.deepEqual(install(opts), []);
  t.deepEqual(install({ ...opts, shimArgs: ["--node-name=xen-c"] }), [`etc/systemd/system/${UNIT_NAME}`]);
});

test("node-install --start: restarts containerd and the kubelet only after a change; --in-host goes through nsenter on PID 1", (t) => {
  t.deepEqual(startCommands({ inHost: false, changed: true }), [
    ["systemctl", "daemon-reload"],
    ["systemctl", "enable", "--now", UNIT_NAME],
    ["systemctl", "restart", "containerd", "kubelet"],
  ]);
  t.deepEqual(startCommands({ inHost: false, changed: false }), [
    ["systemctl", "enable", "--now", UNIT_NAME],
  ]);
  const inHost = startCommands({ inHost: true, changed: false })[0]!;
  t.deepEqual(inHost.slice(0, 3), ["nsenter", "--target", "1"]);
  t.deepEqual(inHost.slice(-3), ["enable", "--now", UNIT_NAME]);
});
