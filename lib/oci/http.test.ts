// Redirects and credentials, against real HTTP and HTTPS servers on loopback: the Authorization
// header never follows a redirect to another host, port or scheme.
import test from "ava";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selfSignedCertificate } from "../x509.js";
import { httpRequest, readText } from "./http.js";

interface Seen {
  path: string;
  scheme: string;
  host: string;
  authorization: string | undefined;
}

/**
 * One loopback port that speaks both HTTP and HTTPS (the first byte of a TLS hello is 0x16), so a
 * redirect can change the scheme and nothing else. `/to?u=<url>` redirects to url; the rest answer 200.
 */
async function dualServer(t: { teardown: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), "sf-http-test-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await selfSignedCertificate({
    keyPath: join(dir, "key.pem"),
    certPath: join(dir, "cert.pem"),
    subject: "/CN=127.0.0.1",
    days: 1,
  });
  const seen: Seen[] = [];
  const handler = (scheme: string) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    seen.push({
      path: url.pathname,
      scheme,
      host: req.headers.host ?? "",
      authorization: req.headers.authorization,
    });
    const to = url.searchParams.get("u");
    if (url.pathname === "/to" && to) res.writeHead(307, { location: to }).end();
    else res.writeHead(200).end("ok");
  };
  const plain = http.createServer(handler("http"));
  const secure = https.createServer(
    { key: await readFile(join(dir, "key.pem")), cert: await readFile(join(dir, "cert.pem")) },
    handler("https"),
  );
  const front = net.createServer((sock) => {
    sock.once("readable", () => {
      const first = sock.read(1) as Buffer | null;
      if (!first) return sock.destroy();
      sock.unshift(first);
      (first[0] === 0x16 ? secure : plain).emit("connection", sock);
    });
  });
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        plain.closeAllConnections();
        secure.closeAllConnections();
        front.close(() => r());
      }),
  );
  return { port: (front.address() as net.AddressInfo).port, seen };
}

const tls = { rejectUnauthorized: false };
const AUTH = { Authorization: "Basic c2VjcmV0OnNlY3JldA==" };

async function get(url: string) {
  const res = await httpRequest({ method: "GET", url: new URL(url), headers: AUTH, tls });
  await readText(res.body);
  return res;
}

test("a redirect on the same origin keeps the credentials", async (t) => {
  const { port, seen } = await dualServer(t);
  const res = await get(`http://127.0.0.1:${port}/to?u=${encodeURIComponent("/v2/blob")}`);
  t.is(res.status, 200);
  t.deepEqual(
    seen.map((s) => [s.path, s.authorization]),
    [
      ["/to", AUTH.Authorization],
      ["/v2/blob", AUTH.Authorization],
    ],
  );
});

test("a redirect from https to http on the same host and port drops the credentials", async (t) => {
  const { port, seen } = await dualServer(t);
  const res = await get(
    `https://127.0.0.1:${port}/to?u=${encodeURIComponent(`http://127.0.0.1:${port}/v2/blob`)}`,
  );
  t.is(res.status, 200);
  t.deepEqual(
    seen.map((s) => [s.scheme, s.path, s.authorization]),
    [
      ["https", "/to", AUTH.Authorization],
      ["http", "/v2/blob", undefined],
    ],
  );
});

test("a redirect to another host drops the credentials, and they do not come back on a redirect home", async (t) => {
  const { port, seen } = await dualServer(t);
  const home = `http://127.0.0.1:${port}/v2/home`;
  const away = `http://localhost:${port}/to?u=${encodeURIComponent(home)}`;
  const res = await get(`http://127.0.0.1:${port}/to?u=${encodeURIComponent(away)}`);
  t.is(res.status, 200);
  t.deepEqual(
    seen.map((s) => [s.host, s.path, s.authorization]),
    [
      [`127.0.0.1:${port}`, "/to", AUTH.Authorization],
      [`localhost:${port}`, "/to", undefined],
      [`127.0.0.1:${port}`, "/v2/home", undefined],
    ],
  );
});

test("a redirect to a scheme other than http(s) is refused", async (t) => {
  const { port } = await dualServer(t);
  await t.throwsAsync(get(`http://127.0.0.1:${port}/to?u=${encodeURIComponent("file:///etc/passwd")}`), {
    message: /redirected to a file: URL/,
  });
});
