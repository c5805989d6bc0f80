// Runs INSIDE dom0 of an emulated Xen node (bench/create.ts starts it): alternates one pod through the
// shim (RunPodSandbox -> CreateContainer -> StartContainer, until the guest's ready line is in the CRI
// log) with one `xl create` of the same kernel and memory (until the same line is in xenconsoled's
// log), N times each, and prints the timings as JSON on stdout. Both get one vif on the node bridge
// (the shim always networks a pod, so an xl guest without a vif would skip the hotplug script the
// shim pays for), and the shim's time is split by CRI call to show where it goes.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connectCri } from "../cri-shim/src/testing/cri-client.js";

const [socket, image, kernel, memoryMiB, rounds, bridge] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
];
const READY = "hello: ready in";
const cri = connectCri(socket);

async function waitForLine(path: string, from: number, deadline: number): Promise<void> {
  for (;;) {
    if (existsSync(path) && readFileSync(path, "utf8").slice(from).includes(READY)) return;
    if (Date.now() > deadline) throw new Error(`no ready line in ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface ShimPhases {
  runPodSandbox: number;
  createContainer: number;
  startContainer: number;
  toReadyLine: number;
}

async function viaShim(i: number, phases: ShimPhases[]): Promise<number> {
  const logDir = `/var/log/pods/bench-${i}`;
  const config = {
    metadata: { name: `bench-${i}`, namespace: "bench", uid: `bench-${i}`, attempt: 0 },
    log_directory: logDir,
    annotations: { "superfluid.dev/memory-mib": memoryMiB },
  };
  const t0 = performance.now();
  const { pod_sandbox_id: pod } = await cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", { config });
  const t1 = performance.now();
  const { container_id: ctr } = await cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: pod,
    config: { metadata: { name: "main" }, image: { image }, log_path: "main.log" },
    sandbox_config: config,
  });
  const t2 = performance.now();
  await cri.runtime("StartContainer", { container_id: ctr });
  const t3 = performance.now();
  await waitForLine(`${logDir}/main.log`, 0, Date.now() + 120_000);
  const ms = performance.now() - t0;
  phases.push({
    runPodSandbox: t1 - t0,
    createContainer: t2 - t1,
    startContainer: t3 - t2,
    toReadyLine: t0 + ms - t3,
  });
  await cri.runtime("RemovePodSandbox", { pod_sandbox_id: pod });
  rmSync(logDir, { recursive: true, force: true });
  return ms;
}

async function viaXl(i: number): Promise<number> {
  const name = `xlbench-${i}`;
  const cfg = `/tmp/${name}.cfg`;
  writeFileSync(
    cfg,
    `name="${name}"\ntype="pv"\nkernel="${kernel}"\nmemory=${memoryMiB}\nvcpus=1\non_poweroff="destroy"\nvif=["bridge=${bridge}"]\n`,
  );
  const consoleLog = `/var/log/xen/console/guest-${name}.log`;
  rmSync(consoleLog, { force: true });
  const t0 = performance.now();
  execFileSync("xl", ["create", cfg], { stdio: "ignore" });
  await waitForLine(consoleLog, 0, Date.now() + 120_000);
  const ms = performance.now() - t0;
  execFileSync("xl", ["destroy", name], { stdio: "ignore" });
  rmSync(cfg, { force: true });
  rmSync(consoleLog, { force: true });
  return ms;
}

const shim: number[] = [];
const phases: ShimPhases[] = [];
const xl: number[] = [];
await cri.image("PullImage", { image: { image } });
for (let i = 0; i < Number(rounds); i++) {
  // Interleaved, and the order flips each round, so drift in the emulator's speed hits both alike.
  if (i % 2 === 0) {
    shim.push(await viaShim(i, phases));
    xl.push(await viaXl(i));
  } else {
    xl.push(await viaXl(i));
    shim.push(await viaShim(i, phases));
  }
}
cri.close();
console.log(JSON.stringify({ shim, xl, phases }));
