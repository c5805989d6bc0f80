// /metrics is for loopback clients unless the operator is told otherwise; /healthz and /readyz stay
// reachable on every address (the kubelet probes the pod's). Against a real operator and apiserver,
// over a real non-loopback address of this host.
import test from "ava";
import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { useCluster } from "../../e2e/harness/ava.js";
import { metricsAllowed } from "../src/metrics.js";
import { startOperator } from "../src/operator.js";

const cluster = useCluster(test, "metrics-access");

function get(host: string, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, timeout: 10_000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

const outside = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

test("loopback-only metrics by default; any address when asked", async (t) => {
  if (!outside) return t.fail("this host has no non-loopback IPv4 address to test from");
  for (const fromAny of [false, true]) {
    const op = await startOperator({
      kubeConfig: cluster().cp.kubeConfig,
      namespace: cluster().namespace,
      httpPort: 0,
      httpHost: "0.0.0.0",
      metricsFromAnyAddress: fromAny,
    });
    try {
      await op.leading; // stopped only once its controllers run: a stop before would leave them starting
      const port = op.port!;
      t.is(await get("127.0.0.1", port, "/metrics"), 200);
      t.is(await get(outside, port, "/metrics"), fromAny ? 200 : 403, `from ${outside}, fromAny=${fromAny}`);
      t.is(await get(outside, port, "/healthz"), 200, "probes reach the pod's address");
    } finally {
      await op.stop();
    }
  }
});

test("metricsAllowed: loopback in every spelling, nothing else", (t) => {
  for (const a of ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]) t.true(metricsAllowed(a), a);
  for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "", undefined])
    t.false(metricsAllowed(a), String(a));
  t.true(metricsAllowed("10.0.0.1", true));
});
