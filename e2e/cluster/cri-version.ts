// `node dist/e2e/cluster/cri-version.js <socket> <timeout-seconds> [shim pid]`: CRI
// RuntimeService.Version against a shim's socket, retried until it answers, the time is up or the
// shim's process is gone. Run inside dom0 by
// startShim(): a socket file proves only that the shim bound it, an answered Version that the gRPC
// server serves CRI. One Node process that retries rather than a process per try: under TCG a
// process start costs seconds (crictl, a 40 MB Go binary, takes minutes).
import * as grpc from "@grpc/grpc-js";
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { loadCriServices } from "../../cri-shim/src/proto.js";

interface VersionResponse {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

function version(client: grpc.Client, deadline: Date): Promise<VersionResponse> {
  return new Promise((resolve, reject) => {
    const call = (
      client as unknown as Record<
        string,
        (
          req: object,
          md: grpc.Metadata,
          opts: grpc.CallOptions,
          cb: (err: grpc.ServiceError | null, res: VersionResponse) => void,
        ) => void
      >
    )["Version"]!;
    call.call(client, { version: "v1" }, new grpc.Metadata(), { deadline }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

async function main(): Promise<number> {
  const [socket, timeoutArg, pidArg] = process.argv.slice(2);
  const timeoutS = Number(timeoutArg);
  const shimPid = pidArg === undefined ? undefined : Number(pidArg);
  if (
    !socket ||
    !Number.isFinite(timeoutS) ||
    timeoutS <= 0 ||
    (shimPid !== undefined && !Number.isInteger(shimPid))
  ) {
    process.stderr.write("usage: cri-version <socket path> <timeout seconds> [shim pid]\n");
    return 2;
  }
  const { RuntimeClient } = loadCriServices();
  const client = new RuntimeClient(`unix://${socket}`, grpc.credentials.createInsecure());
  const until = Date.now() + timeoutS * 1000;
  let last = "";
  try {
    while (Date.now() < until) {
      if (shimPid !== undefined && !existsSync(`/proc/${shimPid}`)) {
        process.stderr.write(`the shim (pid ${shimPid}) exited before answering: ${last}\n`);
        return 1;
      }
      try {
        const v = await version(client, new Date(Math.min(until, Date.now() + 30_000)));
        process.stdout.write(`${v.runtime_name} ${v.runtime_version} (CRI ${v.runtime_api_version})\n`);
        return 0;
      } catch (err) {
        last = (err as Error).message;
        await sleep(1000);
      }
    }
  } finally {
    client.close();
  }
  process.stderr.write(`RuntimeService.Version on ${socket} did not answer within ${timeoutS} s: ${last}\n`);
  return 1;
}

process.exitCode = await main();
