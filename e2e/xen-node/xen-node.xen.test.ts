// The emulated Xen node, end to end: two nodes boot at once, dom0 runs the toolstack, a PV guest
// joins the pod bridge and prints its console line, the host reaches the guest through a forward,
// the nodes reach each other (dom0 to dom0, and dom0 to the other node's pod) over TCP, and stop()
// leaves no QEMU process and no temp dir.
import test from "ava";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { REPO_ROOT } from "../../lib/paths.js";
import { testGuestConfig, testGuestImage } from "./guest-image.js";
import { startXenNode, type XenNode } from "./index.js";

const nodes: XenNode[] = [];
// Boots and guest creation under CPU emulation on 2 shared cores: minutes, not seconds, when the
// machine is busy. t.timeout() also lifts ava's global inactivity timeout for that long.
const SLOW = 25 * 60_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(1000);
  }
}

test.after.always(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

test.serial(
  "two nodes boot at once; dom0 runs the Xen toolstack and sees the repo and the host share",
  async (t) => {
    t.timeout(SLOW);
    const started = Date.now();
    const [a, b] = await Promise.all([
      startXenNode({ name: "xt-a" }),
      startXenNode({ name: "xt-b", cpus: 2 }),
    ]);
    nodes.push(a, b);
    t.log(
      `boot: ${a.name} ${(a.bootMs / 1000).toFixed(1)} s, ${b.name} ${(b.bootMs / 1000).toFixed(1)} s (both ready after ${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
    t.not(a.index, b.index);
    t.not(a.podCidr, b.podCidr);

    const list = await a.exec("xl list");
    t.is(list.code, 0, list.stderr);
    t.regex(list.stdout, /^Domain-0\s+0\s+\d+\s+\d+/m);

    // The emulated CPU has SVM + NPT, so Xen runs HVM/PVH guests on hardware-assisted paging.
    if (!process.env.SUPERFLUID_XEN_CPU) {
      const info = await a.exec("xl info");
      t.regex(info.stdout, /^virt_caps\s*:.*\bhap\b/m, info.stdout);
    }

    // With more than one vCPU dom0 still reads the clock from the TSC in user space (qemu.ts:
    // tsc=reliable), not through a system call to the `xen` clocksource; and the clock never goes
    // back as its reads move between the vCPUs.
    const clock = await b.exec(
      `cat /sys/devices/system/clocksource/clocksource0/current_clocksource; nproc; node -e 'let p = 0n, back = 0; for (let i = 0; i < 200000; i++) { const n = process.hrtime.bigint(); if (n < p) back++; p = n; } console.log("back", back)'`,
    );
    t.is(clock.stdout, "tsc\n2\nback 0\n", clock.stderr);

    // The repo is at the same path in dom0 (the 9p root), so node code from dist/ runs there.
    const pkg = await a.exec(`node -e 'process.stdout.write(require("${REPO_ROOT}/package.json").name)'`);
    t.is(pkg.stdout, "superfluid", pkg.stderr);

    // The share works both ways.
    writeFileSync(join(a.hostDir, "from-host.txt"), "host->dom0");
    const copy = await a.exec(
      "cat /mnt/host/from-host.txt > /mnt/host/from-dom0.txt && echo -n ' dom0->host' >> /mnt/host/from-dom0.txt",
    );
    t.is(copy.code, 0, copy.stderr);
    t.is(readFileSync(join(a.hostDir, "from-dom0.txt"), "utf8"), "host->dom0 dom0->host");

    // dom0 reaches the host's loopback at 10.0.2.2 (how it reaches an apiserver or registry on the host).
    const server = createServer((_req, res) => res.end(`host says hi to ${a.name}`));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const fromDom0 = await a.exec(`wget -q -T 20 -O- http://${a.hostIpFromDom0}:${port}/`);
      t.is(fromDom0.stdout, `host says hi to ${a.name}`, fromDom0.stderr);
    } finally {
      server.close();
    }

    // exec reports exit codes, stderr and stdin faithfully.
    const failing = await a.exec("echo out; echo err >&2; exit 7");
    t.deepEqual(failing, { code: 7, stdout: "out\n", stderr: "err\n" });
    t.is((await a.exec("tr a-z A-Z", { stdin: "piped" })).stdout, "PIPED");
    await t.throwsAsync(a.exec("sleep 30", { timeoutMs: 1000 }), { message: /timed out after 1000 ms/ });
  },
);

test.serial(
  "xl create of a PV guest on the pod bridge: console line, host -> guest HTTP, node -> node TCP",
  async (t) => {
    t.timeout(SLOW);
    const [a, b] = nodes;
    if (!a || !b) return t.fail("nodes did not boot");
    const image = await testGuestImage();
    const [net, prefix] = a.podCidr.split("/");
    const guestIp = net!.replace(/\.0$/, ".10");
    const word = `w${process.pid}`;
    writeFileSync(
      join(a.hostDir, "g1.cfg"),
      testGuestConfig(image, {
        name: "g1",
        word,
        bridge: a.bridge,
        ip: `${guestIp}/${prefix}`,
        gw: a.dom0Ip,
      }),
    );
    const createdAt = Date.now();
    const created = await a.exec("xl create /mnt/host/g1.cfg", { timeoutMs: 300_000 });
    t.is(created.code, 0, created.stderr);
    t.log(`xl create: ${((Date.now() - createdAt) / 1000).toFixed(1)} s`);

    const consoleLog = await waitFor(
      "the guest's network line in the xenconsoled log",
      async () => {
        const r = await a.exec("cat /var/log/xen/console/guest-g1.log");
        return r.stdout.includes("SUPERFLUID-GUEST-NET-UP") ? r.stdout : undefined;
      },
      180_000,
    );
    t.true(consoleLog.includes(`SUPERFLUID-GUEST-UP ${word}`), consoleLog);

    // vif-bridge put the guest's vif on xenbr0.
    const bridged = await a.exec("ls /sys/class/net/xenbr0/brif/");
    t.regex(bridged.stdout, /^vif\d+\.0$/m);

    // Host -> guest: a forward to the pod address.
    const port = await a.forward(8080, { toAddress: guestIp });
    const res = await fetch(`http://127.0.0.1:${port}/`);
    t.is((await res.text()).trim(), `hello from ${word} at ${guestIp}`);

    // Node b -> node a's pod, across the segment and a's pod bridge.
    const crossPod = await b.exec(`wget -q -T 20 -O- http://${guestIp}:8080/`);
    t.is(crossPod.stdout.trim(), `hello from ${word} at ${guestIp}`, crossPod.stderr);

    // dom0 b -> dom0 a over TCP on the segment, payload checked on the far side.
    const payload = `segment-${process.pid}`;
    const listen = a.exec("socat -u TCP-LISTEN:9100,reuseaddr OPEN:/mnt/host/received.txt,creat", {
      timeoutMs: 120_000,
    });
    const sent = await b.exec(
      `for i in $(seq 30); do echo ${payload} | socat -u STDIN TCP:${a.segmentIp}:9100 && exit 0; sleep 1; done; exit 1`,
      { timeoutMs: 120_000 },
    );
    t.is(sent.code, 0, sent.stderr);
    await listen;
    t.is(readFileSync(join(a.hostDir, "received.txt"), "utf8").trim(), payload);

    const destroyed = await a.exec("xl destroy g1 && xl list");
    t.is(destroyed.code, 0, destroyed.stderr);
    t.notRegex(destroyed.stdout, /^g1\s/m);
  },
);

test.serial("stop() leaves no QEMU process and no temp dir", async (t) => {
  t.timeout(SLOW);
  t.true(nodes.length === 2, "nodes booted");
  for (const n of nodes.splice(0)) {
    t.true(alive(n.qemuPid));
    await n.stop();
    t.false(alive(n.qemuPid), `QEMU ${n.qemuPid} still running`);
    t.false(existsSync(n.stateDir), `${n.stateDir} left behind`);
    t.false(existsSync(n.hostDir));
    await t.throwsAsync(n.exec("true"), { message: /stopped/ });
  }
});

test.serial(
  "a boot that does not finish in time fails with the console tail and leaves nothing",
  async (t) => {
    t.timeout(SLOW);
    const before = new Set(listQemuPids());
    // Only dirs this boot made count: a killed earlier run may have left its own behind.
    const dirsBefore = new Set(readdirSyncSafe(tmpdir()));
    const err = await t.throwsAsync(startXenNode({ name: "xt-timeout", bootTimeoutMs: 2000 }));
    t.regex(err?.message ?? "", /boot timed out after 2000 ms\n--- last console lines ---/);
    const leftover = listQemuPids().filter(
      (pid) => !before.has(pid) && readCmdline(pid).includes("superfluid-xen-xt-timeout-"),
    );
    t.deepEqual(leftover, []);
    t.deepEqual(
      readdirSyncSafe(tmpdir()).filter(
        (e) => e.startsWith("superfluid-xen-xt-timeout-") && !dirsBefore.has(e),
      ),
      [],
    );
  },
);

function listQemuPids(): number[] {
  return readdirSyncSafe("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => readCmdline(pid).startsWith("qemu-system-x86_64"));
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

function readdirSyncSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
