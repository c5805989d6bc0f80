// Serves a prom-client registry at http://HOST:PORT/metrics (--metrics-address).
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export async function serveMetrics(address: string, registry: Registry): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new Error(`--metrics-address must be HOST:PORT, got ${JSON.stringify(address)}`);
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // No authentication here: an empty host binds loopback, never every address.
    server.listen(Number(m[2]), m[1] || "127.0.0.1", resolve);
  });
  return server;
}
