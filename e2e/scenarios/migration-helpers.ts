// What the migration scenario needs beside the shared helpers: `kubectl superfluid migrate --wait`
// with a budget longer than a plain plugin call (a restore under emulation is silent for ~50 s), a
// `kubectl logs -f --timestamps` that outlives its pod (the source pod is deleted after the switch,
// so its last ticks must be read while it still exists), the guest domains of a node with their ids,
// and an HTTP prober that runs as a loop inside a dom0 while the test does something else.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { k8sBinary, REPO_ROOT } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";
import type { ClusterNode } from "../cluster/index.js";
import { guestDomainsFromXl, XL_LIST_VERBOSE } from "../xen-node/xl-domains.js";
import type { Scenario } from "./helpers.js";

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `kubectl superfluid ...` as a user runs it, exit code included (a failed migration exits 1). */
export async function superfluidRun(s: Scenario, args: string[], timeoutMs: number): Promise<PluginRun> {
  const full = ["superfluid", ...args, "--namespace", s.namespace, "--kubeconfig", s.cluster.kubeconfigPath];
  const r = await runAsync(k8sBinary("kubectl"), full, {
    env: { ...process.env, PATH: `${join(REPO_ROOT, "bin")}:${process.env.PATH ?? ""}` },
    timeoutMs,
  });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

export interface Tick {
  /** The CRI log line's timestamp (written by the shim of the node the domain ran on). */
  at: number;
  n: number;
}

/** hello's `hello: tick N` lines out of `kubectl logs --timestamps` output. */
export function parseTicks(text: string): Tick[] {
  return [...text.matchAll(/^(\S+) hello: tick (\d+)\s*$/gm)].map((m) => ({
    at: Date.parse(m[1]!),
    n: Number(m[2]),
  }));
}

/** A `kubectl logs -f --timestamps` follower of one pod; stop() ends it and returns what it read. */
export interface LogFollower {
  text(): string;
  /** Resolves when kubectl exits by itself (the container ended, e.g. its pod was deleted). */
  ended: Promise<void>;
  stop(): Promise<string>;
}

export function followPodLog(s: Scenario, pod: string): LogFollower {
  const child: ChildProcess = spawn(
    k8sBinary("kubectl"),
    [
      "--kubeconfig",
      s.cluster.kubeconfigPath,
      "--namespace",
      s.namespace,
      "logs",
      "-f",
      "--timestamps",
      `pod/${pod}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr?.resume();
  const ended = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    text: () => out,
    ended,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await ended;
      return out;
    },
  };
}

export interface Domain {
  name: string;
  id: number;
}

/** Guest domains (not Domain-0, not the lean backend's shells) of a node, from `xl list -v` in its dom0. */
export async function domainsOn(node: ClusterNode): Promise<Domain[]> {
  const r = await node.xen.exec(XL_LIST_VERBOSE);
  if (r.code !== 0) throw new Error(`xl list on ${node.xen.name} failed: ${r.stderr}`);
  return guestDomainsFromXl(r.stdout).map((d) => ({ name: d.name, id: d.id }));
}

export interface ProbeReport {
  sent: number;
  failed: number;
  /** Longest stretch without an answer: from the first failed request to the next answered one. */
  longestFailureMs: number;
}

/** One request per line, `<epoch ms> ok|fail`, as the dom0 loop prints them. */
export function summarizeProbe(lines: string): ProbeReport {
  const samples = lines
    .split("\n")
    .map((l) => /^(\d+) (ok|fail)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ at: Number(m[1]), ok: m[2] === "ok" }));
  let longest = 0;
  let firstFail: number | undefined;
  for (const p of samples) {
    if (!p.ok) firstFail ??= p.at;
    else if (firstFail !== undefined) {
      longest = Math.max(longest, p.at - firstFail);
      firstFail = undefined;
    }
  }
  const last = samples.at(-1);
  if (firstFail !== undefined && last) longest = Math.max(longest, last.at - firstFail);
  return { sent: samples.length, failed: samples.filter((p) => !p.ok).length, longestFailureMs: longest };
}

/**
 * GETs `url` from a node's dom0 every `intervalMs` (each with a `timeoutS` limit) until stop() is
 * called; the loop runs inside dom0, so the host's load does not space the requests out.
 */
export function probeFromDom0(
  node: ClusterNode,
  url: string,
  intervalMs: number,
  timeoutS: number,
): { stop(): Promise<ProbeReport> } {
  const stopFile = `/tmp/sf-probe-${process.pid}-${Date.now()}.stop`;
  const loop =
    `rm -f ${stopFile}; while [ ! -e ${stopFile} ]; do t=$(date +%s%3N); ` +
    `if curl -sf -m ${timeoutS} -o /dev/null ${url}; then echo "$t ok"; else echo "$t fail"; fi; ` +
    `sleep ${(intervalMs / 1000).toFixed(3)}; done; rm -f ${stopFile}`;
  const running = node.xen.exec(loop, { timeoutMs: 60 * 60_000 });
  return {
    async stop() {
      await node.xen.exec(`touch ${stopFile}`);
      const r = await running;
      return summarizeProbe(r.stdout);
    },
  };
}
