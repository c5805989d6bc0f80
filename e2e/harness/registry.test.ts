// The test registry harness itself: it serves the distribution API as configured, and stop()
// leaves no process and no temp dir.
import test from "ava";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { httpRequest, tlsSettings } from "../../lib/oci/http.js";
import { startRegistry, type TestRegistry } from "./registry.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function status(r: TestRegistry, headers: Record<string, string> = {}): Promise<number> {
  const res = await httpRequest({
    method: "GET",
    url: new URL("/v2/", r.url),
    headers,
    tls: tlsSettings(r.caFile, false),
  });
  res.body.resume();
  return res.status;
}

test("plain and TLS+basic-auth registries serve /v2/ as configured; stop() leaves nothing", async (t) => {
  const [plain, secure] = await Promise.all([startRegistry(), startRegistry({ tls: true })]);
  try {
    t.regex(plain.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    t.is(await status(plain), 200);
    t.regex(secure.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    t.is(await status(secure), 401, "credentials required");
    const basic = Buffer.from(`${secure.user!.username}:${secure.user!.password}`).toString("base64");
    t.is(await status(secure, { Authorization: `Basic ${basic}` }), 200);
    const wrong = Buffer.from(`${secure.user!.username}:nope`).toString("base64");
    t.is(await status(secure, { Authorization: `Basic ${wrong}` }), 401);
    // The certificate only verifies with the harness's CA.
    await t.throwsAsync(
      httpRequest({ method: "GET", url: new URL("/v2/", secure.url), tls: tlsSettings(undefined, false) }),
      { message: /certificate/ },
    );
    t.true(alive(plain.pid) && alive(secure.pid));
  } finally {
    await Promise.all([plain.stop(), secure.stop()]);
  }
  for (const r of [plain, secure]) {
    t.false(alive(r.pid), `docker-registry ${r.pid} is gone`);
    t.false(existsSync(r.dir), `${r.dir} is gone`);
  }
  await plain.stop(); // idempotent
});

test("a test process killed before stop() takes its registry with it; the next start sweeps its dir", async (t) => {
  const script = `import { startRegistry } from ${JSON.stringify(new URL("./registry.js", import.meta.url).href)};
const r = await startRegistry();
process.stdout.write(JSON.stringify({ pid: r.pid, dir: r.dir }) + "\\n");
setInterval(() => {}, 1000);`;
  const owner = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    owner.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    owner.once("exit", () => reject(new Error(`owner exited early: ${out}`)));
  });
  const { pid, dir } = JSON.parse(line) as { pid: number; dir: string };
  t.true(alive(pid));
  const exited = new Promise((r) => owner.once("exit", r));
  owner.kill("SIGKILL");
  await exited;
  const deadline = Date.now() + 10_000;
  while (alive(pid) && !isZombie(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.false(alive(pid) && !isZombie(pid), "the registry died with its owner");
  const next = await startRegistry();
  await next.stop();
  t.false(existsSync(dir), "the dead owner's temp dir was swept");
});

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}
