// The per-VM network work spawns no process: N cycles of lease + anti-spoofing guard + readdressing
// + their removal + release, on a real bridge, run in a fresh network namespace AND a fresh PID
// namespace (unshare), where /proc/loadavg's last field is the last PID handed out in that
// namespace only. PIDs used during the cycles minus threads that appeared in the process is the
// number of processes spawned. A control run that spawns /bin/true per cycle proves the count sees
// processes.
import test from "ava";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const dir = (name: string) => JSON.stringify(fileURLToPath(new URL(name, import.meta.url)));
const CYCLES = 20;

function script(dataDir: string, spawnPerCycle: boolean): string {
  return `
    import { readdirSync, readFileSync } from "node:fs";
    import { spawnSync } from "node:child_process";
    const { CniNetwork, bridgeNetworkConfig } = await import(${dir("./cni.js")});
    const { guardVif, unguardVif } = await import(${dir("./antispoof.js")});
    const { applyReaddressing } = await import(${dir("./readdress.js")});
    const config = bridgeNetworkConfig("sfbr0", "10.90.0.0/24", ${JSON.stringify(dataDir)});
    const net = new CniNetwork({ config, ipamDataDir: ${JSON.stringify(dataDir)}, manageBridge: true });
    await net.init();
    if (!net.status().ready) throw new Error(net.status().message);
    const cycle = async (i) => {
      const id = i.toString(16).padStart(8, "0") + "c".repeat(56);
      const n = await net.setUp(id);
      await guardVif("vif" + (i + 1) + ".0", n.ip, n.mac);
      await applyReaddressing(id, { podIp: n.ip, guestIp: "10.91.0.5", guestGateway: "10.91.0.1", guestMac: n.mac, bridge: "sfbr0" });
      if (${spawnPerCycle}) spawnSync("/bin/true");
      await unguardVif("vif" + (i + 1) + ".0");
      await net.tearDown(id);
    };
    await cycle(1000); // warm-up: libraries loaded, worker threads started
    const lastPid = () => Number(readFileSync("/proc/loadavg", "utf8").trim().split(" ").pop().split("/").pop());
    const tasks = () => new Set(readdirSync("/proc/self/task"));
    const started = performance.now();
    const pid0 = lastPid();
    const tasks0 = tasks();
    for (let i = 0; i < ${CYCLES}; i++) await cycle(i);
    const pidsUsed = lastPid() - pid0;
    const msPerCycle = Math.round(((performance.now() - started) / ${CYCLES}) * 10) / 10;
    const newThreads = [...tasks()].filter((t) => !tasks0.has(t)).length;
    console.log(JSON.stringify({ pidsUsed, newThreads, processes: pidsUsed - newThreads, msPerCycle }));
  `;
}

async function measure(t: { teardown(fn: () => void): void }, spawnPerCycle: boolean) {
  const dataDir = mkdtempSync(join(tmpdir(), "sf-noproc-"));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const { stdout } = await run(
    "unshare",
    [
      "--pid",
      "--fork",
      "--mount-proc",
      "--net",
      process.execPath,
      "--input-type=module",
      "-e",
      script(dataDir, spawnPerCycle),
    ],
    { timeout: 120_000 },
  );
  return JSON.parse(stdout.trim().split("\n").pop()!) as {
    pidsUsed: number;
    newThreads: number;
    processes: number;
  };
}

test(`${CYCLES} cycles of lease, anti-spoofing guard, readdressing and their removal spawn no process`, async (t) => {
  const m = await measure(t, false);
  t.log(m);
  t.is(m.processes, 0);
});

test("control: the same cycles with one /bin/true each are counted", async (t) => {
  const m = await measure(t, true);
  t.log(m);
  t.is(m.processes, CYCLES);
});
