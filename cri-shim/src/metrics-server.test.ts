// The shim's metrics carry no authentication: an address without a host binds loopback only.
import test from "ava";
import type { AddressInfo } from "node:net";
import { Counter, Registry } from "prom-client";
import { serveMetrics } from "./metrics-server.js";

test("--metrics-address :PORT listens on 127.0.0.1, not on every address, and serves /metrics", async (t) => {
  const registry = new Registry();
  new Counter({ name: "sf_test_total", help: "a counter", registers: [registry] }).inc();
  const server = await serveMetrics(":0", registry);
  try {
    const addr = server.address() as AddressInfo;
    t.is(addr.address, "127.0.0.1");
    const body = await (await fetch(`http://127.0.0.1:${addr.port}/metrics`)).text();
    t.regex(body, /sf_test_total 1/);
    t.is((await fetch(`http://127.0.0.1:${addr.port}/other`)).status, 404);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test("a metrics address that is not HOST:PORT is refused", async (t) => {
  await t.throwsAsync(serveMetrics("9100", new Registry()), { message: /HOST:PORT/ });
});
