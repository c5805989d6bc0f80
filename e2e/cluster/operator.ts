// The operator as a cluster runs it outside the chart: `node dist/operator/src/main.js` on the host,
// against the control plane's admin kubeconfig.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../../lib/net.js";
import { REPO_ROOT } from "../../lib/paths.js";
import { type ManagedProcess, startProcess } from "../../lib/process.js";
import type { ControlPlane } from "../harness/control-plane.js";

export const OPERATOR_MAIN = join(REPO_ROOT, "dist", "operator", "src", "main.js");

export interface Operator {
  readonly process: ManagedProcess;
  /** 127.0.0.1 port of /healthz, /readyz and /metrics. */
  readonly httpPort: number;
  log(lines?: number): string;
  stop(): Promise<void>;
}

export async function startOperator(cp: ControlPlane): Promise<Operator> {
  if (!existsSync(OPERATOR_MAIN))
    throw new Error(`the operator is not built (${OPERATOR_MAIN} missing): run \`npm run build\``);
  const logPath = join(cp.dir, `operator-${process.pid}.log`);
  const httpPort = await freePort();
  const args = [
    OPERATOR_MAIN,
    `--kubeconfig=${cp.kubeconfigPath}`,
    `--http-port=${httpPort}`,
    "--leader-elect=false",
  ];
  const proc = startProcess("superfluid-operator", process.execPath, args, {
    logPath,
    env: { ...process.env, KUBECONFIG: cp.kubeconfigPath },
  });
  const log = (lines = 60) => {
    try {
      return readFileSync(logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no operator log)";
    }
  };
  // A bad flag or an unreachable apiserver makes it exit at once: say so here, not as a hung test.
  const early = await Promise.race([
    proc.exited.then((code) => ({ code })),
    sleep(3000).then(() => undefined),
  ]);
  if (early) throw new Error(`the operator exited (${String(early.code)}) right after start:\n${log()}`);
  return { process: proc, httpPort, log, stop: () => proc.stop() };
}
