// The http guest without Xen: its init as a plain host process (the server and the command-line
// checks), then the real image (Debian's kernel + initramfs) booted by QEMU (TCG) with a virtio NIC
// on QEMU's user net restricted to the guest, answering through a loopback port forward.
// The Xen boot (and a guest powering itself off on a bad command line) is in http-guest.xen.test.ts.
import test from "ava";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ensureHttpGuestImage,
  httpGuestCmdline,
  parseReadyLine,
  type HttpGuestStatus,
} from "./http-guest.js";

interface Running {
  child: ChildProcess;
  output: { text: string };
  exited: Promise<number | null>;
}

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env });
  const output = { text: "" };
  child.stdout?.on("data", (d: Buffer) => (output.text += d.toString("utf8")));
  child.stderr?.on("data", (d: Buffer) => (output.text += d.toString("utf8")));
  // "close", not "exit": only then has all of the output been read.
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, output, exited };
}

async function waitFor<T>(
  what: string,
  timeoutMs: number,
  r: Running,
  probe: () => T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void r.exited.then(() => (exited = true));
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (exited) throw new Error(`exited before ${what}; output:\n${r.output.text.slice(-3000)}`);
    if (Date.now() > deadline)
      throw new Error(`no ${what} within ${timeoutMs} ms; output:\n${r.output.text.slice(-3000)}`);
    await sleep(100);
  }
}

async function stop(r: Running): Promise<void> {
  if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGTERM");
  await r.exited;
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

test.before(async () => {
  await ensureHttpGuestImage();
});

test("the init serves /healthz and / on a host, counts requests, and stops on SIGTERM", async (t) => {
  const { init } = await ensureHttpGuestImage();
  const r = start(init, ["alpha", "b=c"], {
    ...process.env,
    HTTP_GUEST_CMDLINE: "console=hvc0 port=0 hostname=host-run",
  });
  t.teardown(() => stop(r));
  const ready = await waitFor("ready line", 10_000, r, () => parseReadyLine(r.output.text));
  const base = `http://127.0.0.1:${ready.port}`;

  t.deepEqual(await get(`${base}/healthz`), { status: 200, body: "ok\n" });
  const root = await get(`${base}/?verbose=1`);
  t.is(root.status, 200);
  const status = JSON.parse(root.body) as HttpGuestStatus;
  t.is(status.hostname, "host-run");
  t.is(status.requests, 2);
  t.deepEqual(status.bootArgs, ["alpha", "b=c"]);
  t.true(status.uptimeSeconds > 0);
  t.is((await get(`${base}/nope`)).status, 404);
  t.is((await get(`${base}/`, { method: "POST", body: "x" })).status, 405);

  r.child.kill("SIGTERM");
  t.is(await r.exited, 0);
  t.regex(r.output.text, /http: stopping after 4 requests/);
});

test("the init refuses a bad command line with a message naming the key, and exits", async (t) => {
  const { init } = await ensureHttpGuestImage();
  const cases: Array<[string, RegExp]> = [
    ["ip=10.0.0/24", /bad ip='10\.0\.0\/24': not an IPv4 address/],
    ["ip=10.0.0.1/33", /bad ip='10\.0\.0\.1\/33': prefix must be 1\.\.32/],
    ["port=70000", /bad port='70000'/],
    ["port=80x", /bad port='80x'/],
    ["gw=gateway", /bad gw='gateway'/],
    ["hostname=no_underscores", /bad hostname='no_underscores'/],
  ];
  for (const [cmdline, message] of cases) {
    const r = start(init, [], { ...process.env, HTTP_GUEST_CMDLINE: `port=0 ${cmdline}` });
    t.is(await r.exited, 1, cmdline);
    t.regex(r.output.text, message, cmdline);
    t.notRegex(r.output.text, /ready on/, cmdline);
  }
});

test("httpGuestCmdline builds the guest's command line and rejects what the guest would refuse", (t) => {
  t.is(
    httpGuestCmdline({
      ip: "10.244.1.9/24",
      gateway: "10.244.1.1",
      port: 8080,
      hostname: "web-1",
      appArgs: ["--mode=x", "y"],
    }),
    "ip=10.244.1.9/24 gw=10.244.1.1 port=8080 hostname=web-1 -- --mode=x y",
  );
  t.throws(() => httpGuestCmdline({ ip: "10.244.1.9" }), { message: /ip must be <IPv4>\/<1\.\.32>/ });
  t.throws(() => httpGuestCmdline({ ip: "300.1.1.1/24" }), { message: /ip must be/ });
  t.throws(() => httpGuestCmdline({ ip: "10.0.0.2/24", port: 0 }), { message: /port must be 1\.\.65535/ });
  t.throws(() => httpGuestCmdline({ ip: "10.0.0.2/24", hostname: "a b" }), { message: /hostname/ });
  t.throws(() => httpGuestCmdline({ ip: "10.0.0.2/24", appArgs: ["two words"] }), { message: /app args/ });
});

/** Boots the image under QEMU with a virtio NIC; the guest's port 8080 is reachable at 127.0.0.1:hostPort. */
async function bootUnderQemu(cmdline: string): Promise<{ r: Running; hostPort: number }> {
  const { bzImage, initrd } = await ensureHttpGuestImage();
  const hostPort = await freeLoopbackPort();
  const r = start("setpriv", [
    "--pdeathsig",
    "KILL",
    "--",
    "qemu-system-x86_64",
    "-accel",
    "tcg",
    "-m",
    "128",
    "-smp",
    "1",
    "-nodefaults",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    "stdio",
    "-kernel",
    bzImage,
    "-initrd",
    initrd,
    "-append",
    `console=ttyS0 panic=-1 quiet ${cmdline}`,
    // restrict=on: the guest reaches nothing outside QEMU; only the forward below reaches it.
    "-netdev",
    `user,id=n0,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:${hostPort}-10.0.2.15:8080`,
    "-device",
    "virtio-net-pci,netdev=n0",
  ]);
  return { r, hostPort };
}

test("the image boots under QEMU, configures its NIC from the command line and answers HTTP", async (t) => {
  const cmdline = httpGuestCmdline({
    ip: "10.0.2.15/24",
    gateway: "10.0.2.2",
    port: 8080,
    hostname: "qemu-guest",
    appArgs: ["one", "two"],
  });
  const started = Date.now();
  const { r, hostPort } = await bootUnderQemu(cmdline);
  t.teardown(() => stop(r));
  const ready = await waitFor("ready line", 180_000, r, () => parseReadyLine(r.output.text));
  const readyWallMs = Date.now() - started;
  t.deepEqual([ready.ip, ready.port], ["10.0.2.15", 8080]);
  t.regex(r.output.text, /http: init at \d+ ms, modules \d+ ms, network \d+ ms: eth0 10\.0\.2\.15\/24/);

  t.deepEqual(await get(`http://127.0.0.1:${hostPort}/healthz`), { status: 200, body: "ok\n" });
  const status = JSON.parse((await get(`http://127.0.0.1:${hostPort}/`)).body) as HttpGuestStatus;
  t.is(status.hostname, "qemu-guest");
  t.is(status.address, "10.0.2.15:8080");
  t.deepEqual(status.bootArgs, ["one", "two"]);
  t.is(status.requests, 2);
  t.true(status.uptimeSeconds * 1000 >= ready.bootMs);
  t.log(`QEMU TCG: ready ${ready.bootMs} ms after kernel start, ${readyWallMs} ms wall from QEMU launch`);
});
