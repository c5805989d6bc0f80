// Our envtest: a real etcd and kube-apiserver on loopback (free ports, real TLS, RBAC on), an admin
// kubeconfig, our CRDs applied; optionally kube-controller-manager and kube-scheduler. stop() leaves
// no process, port or directory behind, and the orphan guard in lib/process.ts covers a crashed test.
import { KubeConfig } from "@kubernetes/client-node";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { stringify } from "yaml";
import { freePort, waitFor } from "../../lib/net.js";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import {
  type ManagedProcess,
  managedTempDir,
  releaseTempDir,
  runAsync,
  startProcess,
} from "../../lib/process.js";
import { makePki, type Pki } from "./pki.js";

export interface ControlPlaneOptions {
  /** Apply crds/ after start (default true). */
  applyCRDs?: boolean;
  /** Extra names/IPs for the apiserver certificate (e.g. the address an emulated node dials). */
  extraServerNames?: string[];
  extraIps?: string[];
  /** Address the apiserver listens on (default 127.0.0.1). */
  bindAddress?: string;
  /**
   * The address the `kubernetes` Service's endpoint names (default the bind address, 127.0.0.1 for
   * 0.0.0.0). Pods that use in-cluster config reach the apiserver through it: an emulated node's
   * pods need the address its dom0 reaches the host at (10.0.2.2), and the certificate names
   * 10.96.0.1, the Service's ClusterIP.
   */
  advertiseAddress?: string;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  readonly server: string;
  readonly port: number;
  readonly dir: string;
  readonly pki: Pki;
  readonly kubeconfigPath: string;
  readonly kubeConfig: KubeConfig;
  kubectl(args: string[], opts?: { input?: string }): Promise<CommandResult>;
  startControllerManager(opts?: { controllers?: string[] }): Promise<ManagedProcess>;
  startScheduler(): Promise<ManagedProcess>;
  /** Tail of each component's log, for failure reports. */
  logs(lines?: number): string;
  stop(): Promise<void>;
}

const ensureBinaries = (names: Parameters<typeof k8sBinary>[0][]) => {
  const missing = names.filter((n) => !existsSync(k8sBinary(n)));
  if (missing.length)
    throw new Error(
      `missing ${missing.join(", ")} in ${k8sBinary("etcd").replace(/\/etcd$/, "")}: run \`npm run setup\``,
    );
};

function writeKubeconfig(
  path: string,
  server: string,
  pki: Pki,
  user: { cert?: string; key?: string; token?: string },
): void {
  const u: Record<string, string> = {};
  if (user.cert) u["client-certificate"] = user.cert;
  if (user.key) u["client-key"] = user.key;
  if (user.token) u.token = user.token;
  writeFileSync(
    path,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "superfluid-test", cluster: { server, "certificate-authority": pki.caCert } }],
      users: [{ name: "user", user: u }],
      contexts: [
        {
          name: "superfluid-test",
          context: { cluster: "superfluid-test", user: "user", namespace: "default" },
        },
      ],
      "current-context": "superfluid-test",
    }),
    { mode: 0o600 },
  );
}

function probeReady(port: number, pki: Pki): Promise<true | undefined> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: "/readyz",
        ca: readFileSync(pki.caCert),
        cert: readFileSync(pki.adminCert),
        key: readFileSync(pki.adminKey),
        timeout: 2000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200 ? true : undefined);
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

export function runCommand(cmd: string, args: string[], input?: string): Promise<CommandResult> {
  return runAsync(cmd, args, { input, timeoutMs: 180_000 });
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  ensureBinaries(["etcd", "kube-apiserver", "kubectl"]);
  const dir = managedTempDir("sf-cp-");
  const pki = makePki(dir, opts.extraServerNames, opts.extraIps);
  const processes: ManagedProcess[] = [];
  const stopAll = async () => {
    for (const p of processes.reverse()) await p.stop();
    processes.length = 0;
  };
  try {
    const [etcdPort, etcdPeerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    processes.push(
      startProcess(
        "etcd",
        k8sBinary("etcd"),
        [
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
          `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
          `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
          "--unsafe-no-fsync", // a test store: durability is not the point, speed on 2 cores is
          "--log-level=warn",
        ],
        { logPath: join(dir, "etcd.log") },
      ),
    );
    const bind = opts.bindAddress ?? "127.0.0.1";
    processes.push(
      startProcess(
        "kube-apiserver",
        k8sBinary("kube-apiserver"),
        [
          `--etcd-servers=http://127.0.0.1:${etcdPort}`,
          `--bind-address=${bind}`,
          `--advertise-address=${opts.advertiseAddress ?? (bind === "0.0.0.0" ? "127.0.0.1" : bind)}`,
          `--secure-port=${apiPort}`,
          `--tls-cert-file=${pki.serverCert}`,
          `--tls-private-key-file=${pki.serverKey}`,
          `--client-ca-file=${pki.caCert}`,
          `--service-account-key-file=${pki.serviceAccountPub}`,
          `--service-account-signing-key-file=${pki.serviceAccountKey}`,
          "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
          "--api-audiences=https://kubernetes.default.svc.cluster.local",
          "--authorization-mode=Node,RBAC",
          "--service-cluster-ip-range=10.96.0.0/16",
          "--allow-privileged=true",
          `--kubelet-client-certificate=${pki.adminCert}`,
          `--kubelet-client-key=${pki.adminKey}`,
          "--kubelet-preferred-address-types=InternalIP,Hostname",
          "--enable-priority-and-fairness=false",
          // /debug/pprof for finding where the apiserver's CPU goes (SUPERFLUID_APISERVER_PROFILING=1).
          `--profiling=${process.env.SUPERFLUID_APISERVER_PROFILING === "1"}`,
          "--v=1",
        ],
        { logPath: join(dir, "kube-apiserver.log") },
      ),
    );
    const apiserver = processes[1]!;
    await Promise.race([
      waitFor("kube-apiserver /readyz", () => probeReady(apiPort, pki), 120_000, 250),
      apiserver.exited.then((code) => {
        throw new Error(`kube-apiserver exited (${code}):\n${tail(apiserver.logPath, 30)}`);
      }),
    ]);
  } catch (e) {
    const logs = ["etcd", "kube-apiserver"]
      .map((n) => `--- ${n}\n${tail(join(dir, `${n}.log`), 20)}`)
      .join("\n");
    await stopAll();
    releaseTempDir(dir);
    throw new Error(`control plane failed to start: ${(e as Error).message}\n${logs}`);
  }

  const port = Number(/--secure-port=(\d+)/.exec(processes[1]!.child.spawnargs.join(" "))![1]);
  const server = `https://127.0.0.1:${port}`;
  const kubeconfigPath = join(dir, "admin.kubeconfig");
  writeKubeconfig(kubeconfigPath, server, pki, { cert: pki.adminCert, key: pki.adminKey });
  const descriptor: ControlPlaneDescriptor = { server, port, dir, pki, kubeconfigPath };
  writeFileSync(join(dir, "control-plane.json"), JSON.stringify(descriptor));
  const cp = handle(descriptor, processes, async () => {
    await stopAll();
    releaseTempDir(dir);
  });
  if (opts.applyCRDs ?? true) {
    const applied = await cp.kubectl([
      "apply",
      "--server-side",
      "--field-manager=superfluid-harness",
      "-f",
      join(REPO_ROOT, "crds"),
    ]);
    if (applied.code !== 0) {
      await cp.stop();
      throw new Error(`applying crds/ failed: ${applied.stderr}`);
    }
    const established = await cp.kubectl([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      "crd",
      "-l",
      "app.kubernetes.io/part-of=superfluid",
    ]);
    if (established.code !== 0) {
      await cp.stop();
      throw new Error(`CRDs not established: ${established.stderr}`);
    }
    // Established is not served: the apiserver answers 429 "storage is (re)initializing" until the
    // watch cache of a new resource has synced (seen in CI on a list right after this returned).
    for (const resource of ["unikernelvms.superfluid.dev", "unikernelvmmigrations.superfluid.dev"]) {
      let served = await cp.kubectl(["get", resource, "-A", "--request-timeout=10s", "-o", "name"]);
      for (let i = 0; served.code !== 0 && i < 60; i++) {
        await new Promise((r) => setTimeout(r, 500));
        served = await cp.kubectl(["get", resource, "-A", "--request-timeout=10s", "-o", "name"]);
      }
      if (served.code !== 0) {
        await cp.stop();
        throw new Error(`${resource} is established but not served: ${served.stderr}`);
      }
    }
  }
  return cp;
}

/** Writes a kubeconfig for the same cluster with another identity (a token or a client cert). */
export function writeUserKubeconfig(
  cp: ControlPlane,
  path: string,
  user: { token?: string; cert?: string; key?: string },
): void {
  writeKubeconfig(path, cp.server, cp.pki, user);
}

/** What another process needs to use a running control plane (see attachControlPlane). */
export interface ControlPlaneDescriptor {
  server: string;
  port: number;
  dir: string;
  pki: Pki;
  kubeconfigPath: string;
}

/**
 * Uses a control plane another process started (scripts/test.mjs shares one across test files).
 * stop() stops only what this handle started itself (controller-manager, scheduler).
 */
export function attachControlPlane(descriptorPath: string): ControlPlane {
  const d = JSON.parse(readFileSync(descriptorPath, "utf8")) as ControlPlaneDescriptor;
  const own: ManagedProcess[] = [];
  return handle(d, own, async () => {
    for (const p of own.reverse()) await p.stop();
  });
}

function handle(
  d: ControlPlaneDescriptor,
  processes: ManagedProcess[],
  stop: () => Promise<void>,
): ControlPlane {
  const { dir, pki, kubeconfigPath } = d;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfigPath);
  const logPath = (name: string) => join(dir, `${name}-${process.pid}.log`);
  return {
    ...d,
    kubeConfig,
    kubectl: (args, o = {}) =>
      runCommand(k8sBinary("kubectl"), ["--kubeconfig", kubeconfigPath, ...args], o.input),
    async startControllerManager(o = {}) {
      ensureBinaries(["kube-controller-manager"]);
      const p = startProcess(
        "kube-controller-manager",
        k8sBinary("kube-controller-manager"),
        [
          `--kubeconfig=${kubeconfigPath}`,
          `--controllers=${(o.controllers ?? ["*"]).join(",")}`,
          "--leader-elect=false",
          `--service-account-private-key-file=${pki.serviceAccountKey}`,
          `--root-ca-file=${pki.caCert}`,
          `--cluster-signing-cert-file=${pki.caCert}`,
          `--cluster-signing-key-file=${pki.caKey}`,
          "--use-service-account-credentials=false",
          "--secure-port=0",
          "--kube-api-qps=1000",
          "--kube-api-burst=1000",
          "--v=1",
        ],
        { logPath: logPath("kube-controller-manager") },
      );
      processes.push(p);
      return p;
    },
    async startScheduler() {
      ensureBinaries(["kube-scheduler"]);
      const p = startProcess(
        "kube-scheduler",
        k8sBinary("kube-scheduler"),
        [`--kubeconfig=${kubeconfigPath}`, "--leader-elect=false", "--secure-port=0", "--v=1"],
        { logPath: logPath("kube-scheduler") },
      );
      processes.push(p);
      return p;
    },
    logs(lines = 40) {
      const names = ["etcd", "kube-apiserver", ...processes.map((p) => p.name)];
      return [...new Set(names)]
        .map((n) => {
          const p = processes.find((x) => x.name === n);
          const path = p ? p.logPath : join(dir, `${n}.log`);
          return `--- ${n} (${path})\n${tail(path, lines)}`;
        })
        .join("\n");
    },
    stop,
  };
}
