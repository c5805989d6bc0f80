// The test registry harness itself: it serves the distribution API as configured, and stop()
// leaves no process and no temp dir.
import test from "ava";
import { existsSync } from "node:fs";
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
