// `npm run xen-node [-- --name n1 --memory 2048 --dom0-memory 1024 --cpus 2]`: boots one emulated Xen
// node by hand for debugging, then reads commands from stdin and runs them in dom0. Ctrl-C stops it.
// From another terminal: `node dist/e2e/xen-node/cli.js exec <agent-port> 'xl list'`.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { agentExec } from "./exec-client.js";
import { startXenNode } from "./index.js";

async function execCommand(port: number, cmd: string): Promise<number> {
  const r = await agentExec(port, { cmd, timeoutMs: 600_000 });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return r.code;
}

async function main(): Promise<void> {
  const [sub, portArg, ...rest] = process.argv.slice(2);
  if (sub === "exec") {
    if (!portArg || rest.length === 0) throw new Error("usage: cli.js exec <agent-port> '<command>'");
    process.exitCode = await execCommand(Number(portArg), rest.join(" "));
    return;
  }
  const { values } = parseArgs({
    options: {
      name: { type: "string", default: "dev" },
      memory: { type: "string" },
      "dom0-memory": { type: "string" },
      cpus: { type: "string" },
    },
  });
  const node = await startXenNode({
    name: values.name ?? "dev",
    ...(values.memory ? { memoryMiB: Number(values.memory) } : {}),
    ...(values["dom0-memory"] ? { dom0MemoryMiB: Number(values["dom0-memory"]) } : {}),
    ...(values.cpus ? { cpus: Number(values.cpus) } : {}),
  });
  const port = node.agentPort;
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stderr.write("\nstopping the node...\n");
    await node.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
  process.stderr.write(
    [
      `Xen node '${node.name}' is up in ${(node.bootMs / 1000).toFixed(1)} s (QEMU pid ${node.qemuPid}).`,
      `  pod subnet ${node.podCidr} on ${node.bridge} (dom0 ${node.dom0Ip}), segment ${node.segmentIp}, host share ${node.hostDir} = dom0 ${node.dom0HostDir}`,
      `  type commands to run them in dom0, or from another shell: node dist/e2e/xen-node/cli.js exec ${port} 'xl list'`,
      `  Ctrl-C (or end of input) stops the node.`,
      "",
    ].join("\n"),
  );
  const lines = createInterface({ input: process.stdin, terminal: false });
  process.stderr.write("dom0# ");
  for await (const line of lines) {
    if (line.trim()) {
      try {
        const code = await execCommand(port, line);
        if (code !== 0) process.stderr.write(`[exit ${code}]\n`);
      } catch (err) {
        process.stderr.write(`${(err as Error).message}\n`);
      }
    }
    process.stderr.write("dom0# ");
  }
  await stop();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
