// `hello`, our own PV unikernel (native/unikernels/hello), on an emulated Xen node: boots with
// `xl create` in 4 MiB, prints its command line and ready line to the Xen console, ticks once a
// second, obeys `xl shutdown` / `xl reboot`, and keeps its counter across `xl pause`/`unpause` and
// `xl save` + `xl restore` (a real suspend: the restored domain is a new domain on new frames).
import test from "ava";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../lib/paths.js";
import { startXenNode, type XenNode } from "../xen-node/index.js";
import { parseHelloLog, type HelloLog } from "./hello.js";

const KERNEL = join(REPO_ROOT, "native", "build", "hello", "hello");
const IMAGE_LIMIT_BYTES = 256 * 1024;

let node: XenNode | undefined;

test.before(async () => {
  // Incremental and quiet: normally `npm run setup` already built it.
  await promisify(execFile)("make", ["-s", "-C", join(REPO_ROOT, "native", "unikernels", "hello")]);
  node = await startXenNode({ name: `hello-${randomBytes(2).toString("hex")}` });
});

test.after.always(async () => {
  await node?.stop();
});

function xen(): XenNode {
  if (!node) throw new Error("the Xen node did not start");
  return node;
}

/** Runs a dom0 command; a non-zero exit fails the test with its output. */
async function sh(cmd: string, timeoutMs = 120_000): Promise<string> {
  const r = await xen().exec(cmd, { timeoutMs });
  if (r.code !== 0) throw new Error(`dom0: \`${cmd}\` exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = Date.now();
  const result = await work();
  return [result, Date.now() - start];
}

async function consoleLog(domain: string): Promise<HelloLog> {
  // After a migration to the same node xenconsoled logs the receiving domain under the name it had
  // while it was built ("<name>--incoming"): the guest's whole story is both files in order.
  const dir = "/var/log/xen/console";
  const r = await xen().exec(
    `cat ${dir}/guest-${domain}.log ${dir}/guest-${domain}--incoming.log 2>/dev/null || true`,
  );
  return parseHelloLog(r.stdout);
}

/** Polls the guest's console log until `ready(log)` holds. */
async function waitForLog(
  domain: string,
  what: string,
  ready: (log: HelloLog) => boolean,
  timeoutMs = 90_000,
): Promise<HelloLog> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = await consoleLog(domain);
    if (ready(log)) return log;
    if (Date.now() > deadline)
      throw new Error(`${domain}: no ${what} within ${timeoutMs} ms; console:\n${log.text.slice(-3000)}`);
    await sleep(500);
  }
}

async function domainExists(domain: string): Promise<boolean> {
  return (await xen().exec(`xl domid ${domain}`)).code === 0;
}

/** Writes an xl config into dom0 and creates the domain. Returns the `xl create` wall time. */
async function create(domain: string, cmdline: string, type: "pv" | "pvh" = "pv"): Promise<number> {
  const config = [
    `name="${domain}"`,
    `type="${type}"`,
    `kernel="${KERNEL}"`,
    // PVH: libxl also places ACPI tables and the start info in guest memory; xl's default HAP
    // paging pool for so small a guest is refused by Xen (ENOMEM at 32 kB).
    ...(type === "pvh" ? ["memory=8", "shadow_memory=3"] : ["memory=4"]),
    `cmdline="${cmdline}"`,
    'on_crash="preserve"',
  ].join("\n");
  const r = await xen().exec(`cat > /run/${domain}.cfg`, { stdin: config + "\n" });
  if (r.code !== 0) throw new Error(`cannot write the xl config: ${r.stderr}`);
  const [, ms] = await timed(() => sh(`xl create /run/${domain}.cfg`));
  return ms;
}

test.serial(
  "hello boots in 4 MiB, prints its command line and a ready line, ticks, reboots and powers off on request",
  async (t) => {
    const imageBytes = statSync(KERNEL).size;
    t.log(`image ${KERNEL}: ${imageBytes} bytes (${(imageBytes / 1024).toFixed(1)} KiB)`);
    t.true(imageBytes <= IMAGE_LIMIT_BYTES, `image is ${imageBytes} bytes, over the 256 KiB target`);

    const domain = `hello-boot-${randomBytes(2).toString("hex")}`;
    const createMs = await create(domain, "serve fast GREETING=hi LEVEL=3");
    let log = await waitForLog(domain, "second tick", (l) => l.ticks.length >= 2);
    t.log(`xl create ${createMs} ms; guest reports ready in ${log.readyMs} ms; ${log.memoryLine}`);
    t.deepEqual(log.args, ["serve", "fast"]);
    t.deepEqual(log.env, ["GREETING=hi", "LEVEL=3"]);
    t.is(log.readyCount, 1);
    t.deepEqual(log.ticks.slice(0, 2), [1, 2]);

    const listed = await sh(`xl list ${domain}`);
    const memMiB = Number(listed.trim().split("\n")[1]?.trim().split(/\s+/)[2]);
    t.log(`xl list: ${memMiB} MiB for the domain`);
    t.true(memMiB <= 4, `domain has ${memMiB} MiB`);

    // Reboot: the toolstack rebuilds the domain, which boots again from scratch (a second ready line,
    // ticks from 1 again).
    const domidBefore = (await sh(`xl domid ${domain}`)).trim();
    await sh(`xl reboot ${domain}`);
    log = await waitForLog(
      domain,
      "ready line after reboot",
      (l) => l.readyCount === 2 && l.ticksAfterLastReady.length >= 1,
    );
    t.regex(log.text, /hello: reboot at tick \d+/);
    t.deepEqual(log.ticksAfterLastReady.slice(0, 1), [1]);
    t.not((await sh(`xl domid ${domain}`)).trim(), domidBefore, "reboot should build a new domain");

    // Poweroff: the guest acknowledges control/shutdown and shuts down with reason poweroff (0).
    const shutdownOut = await sh(`xl shutdown -w ${domain}`);
    t.regex(shutdownOut, /shut down, reason code 0|has been destroyed/);
    log = await consoleLog(domain);
    t.regex(log.text, /hello: poweroff at tick \d+/);
    // The xl process that watched the domain logged the reasons Xen reported: reboot (1), then poweroff (0).
    const xlLog = await sh(`cat /var/log/xen/xl-${domain}.log`);
    t.regex(xlLog, /has shut down, reason code 1 /);
    t.regex(xlLog, /has shut down, reason code 0 /);
    t.false(await domainExists(domain), "domain still listed after xl shutdown -w");
  },
);

test.serial("hello keeps counting across xl pause/unpause and xl save + xl restore", async (t) => {
  const domain = `hello-save-${randomBytes(2).toString("hex")}`;
  const saveFile = `/var/lib/xen/${domain}.save`;
  await create(domain, "counter");
  await waitForLog(domain, "tick 2", (l) => l.ticks.length >= 2);

  const [, pauseMs] = await timed(async () => {
    await sh(`xl pause ${domain}`);
    await sleep(2000);
    await sh(`xl unpause ${domain}`);
  });
  const afterPause = await waitForLog(domain, "ticks after unpause", (l) => l.ticks.length >= 4);

  // Twice: the second save only works if the guest re-published its p2m after the first restore.
  const rounds: string[] = [];
  for (let round = 1; round <= 2; round++) {
    const [, saveMs] = await timed(() =>
      sh(`xl save ${domain} ${saveFile}`).catch(async (err: Error) => {
        const diag = await xen().exec(
          `xl list; tail -c 2000 /var/log/xen/console/guest-${domain}.log; xl dmesg | tail -30`,
        );
        throw new Error(`${err.message}\n--- dom0 state ---\n${diag.stdout}${diag.stderr}`);
      }),
    );
    t.false(await domainExists(domain), "xl save should leave no domain behind");
    const saveBytes = Number((await sh(`stat -c %s ${saveFile}`)).trim());
    const [, restoreMs] = await timed(() => sh(`xl restore ${saveFile}`));
    await sh(`rm -f ${saveFile}`);
    t.true(await domainExists(domain), "xl restore should bring the domain back");
    const before = (await consoleLog(domain)).ticks.length;
    await waitForLog(
      domain,
      `ticks after restore ${round}`,
      (l) => l.restoredCount === round && l.ticks.length >= before + 2,
    );
    rounds.push(`save ${saveMs} ms (${saveBytes} bytes), restore ${restoreMs} ms`);
  }
  // A checkpoint (`xl save -c`): the suspend is cancelled and the same domain runs on, so the guest
  // takes the other return of SCHEDOP_shutdown (1) and must still count on.
  const domidBefore = (await sh(`xl domid ${domain}`)).trim();
  await sh(`xl save -c ${domain} ${saveFile}`);
  await sh(`rm -f ${saveFile}`);
  t.is((await sh(`xl domid ${domain}`)).trim(), domidBefore, "xl save -c should keep the domain");
  const beforeCheckpoint = await consoleLog(domain);
  await waitForLog(
    domain,
    "ticks after the checkpoint",
    (l) =>
      /hello: resumed at tick \d+ \(suspend cancelled\)/.test(l.text) &&
      l.ticks.length >= beforeCheckpoint.ticks.length + 2,
  );
  const log = await consoleLog(domain);
  t.log(`xl pause + 2 s + xl unpause: ${pauseMs} ms; ${rounds.join("; ")}`);

  // One boot only, and the ticks are 1, 2, 3, ... with no restart and no repeat.
  t.is(log.readyCount, 1, "the guest booted again instead of resuming");
  t.deepEqual(
    log.ticks,
    log.ticks.map((_, i) => i + 1),
  );
  t.true(afterPause.ticks.length >= 4);
  t.is(log.restoredCount, 2);
  t.is(log.cancelledCount, 1);
  // Each resume continues at the tick where its suspend happened, and ticks follow it.
  t.deepEqual(log.resumedAt, log.suspendedAt);
  t.true(
    log.ticks[log.ticks.length - 1]! > log.resumedAt[log.resumedAt.length - 1]!,
    "no tick after the last resume",
  );

  // Poweroff still works after all that. The xl process that watched this domain exited when it saw
  // the checkpoint's suspend ("Domain has suspended"), so nobody reaps the domain after it shuts
  // down: check it is shut down with reason poweroff (not running), then destroy it.
  const shutdownOut = await sh(`xl shutdown -w ${domain}`);
  t.regex(shutdownOut, /has been shut down, reason code 0|has been destroyed/);
  t.regex((await consoleLog(domain)).text, /hello: poweroff at tick \d+/);
  if (await domainExists(domain)) {
    const state = (await sh(`xl list ${domain}`)).trim().split("\n")[1]?.trim().split(/\s+/)[4] ?? "";
    t.true(state.includes("s"), `domain state after poweroff is ${state}`);
    await sh(`xl destroy ${domain}`);
  }
  t.false(await domainExists(domain));
});

test.serial(
  "the same image boots as PVH (PHYS32_ENTRY), ticks, and keeps counting across a live (pre-copy) xl migrate",
  async (t) => {
    const info = await sh("xl info");
    if (!/^virt_caps\s*:.*\bhap\b/m.test(info)) return t.fail(`the node has no HAP: ${info}`);
    const domain = `hello-pvh-${randomBytes(2).toString("hex")}`;
    const createMs = await create(domain, "pvh-mode GREETING=pvh", "pvh");
    let log = await waitForLog(domain, "second tick", (l) => l.ticks.length >= 2);
    t.log(`PVH: xl create ${createMs} ms; guest reports ready in ${log.readyMs} ms; ${log.memoryLine}`);
    t.regex(log.text, /hello: superfluid hello unikernel on PVH/);
    t.deepEqual(log.args, ["pvh-mode"]);
    t.deepEqual(log.env, ["GREETING=pvh"]);
    t.regex(await sh(`xl list -l ${domain}`), /"type": "pvh"/);

    // Live migration to the same node: libxl's pre-copy (log-dirty on HAP) while the guest runs,
    // then the final suspend; the guest resumes in the new domain and counts on.
    const domidBefore = (await sh(`xl domid ${domain}`)).trim();
    const [out, migrateMs] = await timed(() =>
      sh(`xl migrate -s "" ${domain} "xl migrate-receive" 2>&1`, 300_000).catch(async (err: Error) => {
        const diag = await xen().exec(
          `xl list; xl dmesg | tail -30; tail -c 2000 /var/log/xen/console/guest-${domain}*.log`,
        );
        throw new Error(`${err.message}\n--- dom0 state ---\n${diag.stdout}${diag.stderr}`);
      }),
    );
    t.log(`xl migrate (live, local) ${migrateMs} ms: ${out.replace(/\s+/g, " ").slice(-300)}`);
    const domidAfter = (await sh(`xl domid ${domain}`)).trim();
    t.not(domidAfter, domidBefore, "migration should leave the guest in a new domain");
    const before = (await consoleLog(domain)).ticks.length;
    log = await waitForLog(
      domain,
      "ticks after the live move",
      (l) => l.restoredCount === 1 && l.ticks.length >= before + 2,
    );
    t.is(log.readyCount, 1, "the guest booted again instead of resuming");
    t.deepEqual(
      log.ticks,
      log.ticks.map((_, i) => i + 1),
    );
    t.deepEqual(log.resumedAt, log.suspendedAt);
    await sh(`xl destroy ${domain}`);
  },
);
