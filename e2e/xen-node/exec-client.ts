// The host side of the dom0 exec agent (see agent.ts for the protocol and why TCP).
import { connect } from "node:net";
import type { AgentRequest, AgentResponse } from "./agent.js";

export class AgentUnreachable extends Error {}

/** channelTimeoutMs: give up on a channel that never answers (default: the command's timeout + 15 s). */
export async function agentExec(
  port: number,
  request: AgentRequest,
  channelTimeoutMs = request.timeoutMs + 15_000,
): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    let settled = false;
    const settle = (err: Error | undefined, value?: AgentResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else if (value) resolve(value);
    };
    // The agent enforces the command's timeout; this one only catches a dead channel.
    // Before dom0's network is up, QEMU's user net holds the connection open without an answer.
    const timer = setTimeout(
      () => settle(new AgentUnreachable(`exec channel: no answer within ${channelTimeoutMs} ms`)),
      channelTimeoutMs,
    );
    sock.on("connect", () => sock.write(JSON.stringify(request) + "\n"));
    sock.on("data", (d: Buffer) => chunks.push(d));
    sock.on("error", (err) => settle(new AgentUnreachable(`exec channel: ${err.message}`)));
    sock.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8").trim();
      // QEMU's user net accepts on the host side before it knows whether dom0 listens: an empty
      // answer means the agent is not up (yet).
      if (!text) return settle(new AgentUnreachable("exec channel: the dom0 agent is not listening"));
      try {
        settle(undefined, JSON.parse(text) as AgentResponse);
      } catch {
        settle(new Error(`exec channel: malformed answer: ${text.slice(0, 200)}`));
      }
    });
  });
}

/** A free TCP port on 127.0.0.1 (released just before QEMU binds it; start retries on a lost race). */
export async function freeTcpPort(): Promise<number> {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("cannot allocate a TCP port");
  return address.port;
}
