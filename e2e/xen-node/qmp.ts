// A minimal QMP client (QEMU's JSON monitor on a unix socket), used to add port forwards to a
// running node. One connection per command: forwards are rare, and it keeps the state trivial.
import { connect } from "node:net";

export async function qmpHumanCommand(
  socketPath: string,
  commandLine: string,
  timeoutMs = 10_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buffered = "";
    let step = 0; // 0: greeting, 1: capabilities answered, 2: command answered
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`QMP ${socketPath}: no answer to '${commandLine}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (err: Error | undefined, value = ""): void => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    sock.setEncoding("utf8");
    sock.on("error", (err) => finish(new Error(`QMP ${socketPath}: ${err.message}`)));
    sock.on("data", (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as {
          QMP?: unknown;
          return?: unknown;
          error?: { desc?: string };
          event?: string;
        };
        if (msg.event) continue;
        if (msg.error) return finish(new Error(`QMP '${commandLine}': ${msg.error.desc ?? "error"}`));
        if (step === 0 && msg.QMP) {
          step = 1;
          sock.write(JSON.stringify({ execute: "qmp_capabilities" }) + "\n");
        } else if (step === 1 && "return" in msg) {
          step = 2;
          sock.write(
            JSON.stringify({ execute: "human-monitor-command", arguments: { "command-line": commandLine } }) +
              "\n",
          );
        } else if (step === 2 && "return" in msg) {
          // HMP errors come back as text in a successful QMP answer.
          return finish(undefined, typeof msg.return === "string" ? msg.return : "");
        }
      }
    });
  });
}
