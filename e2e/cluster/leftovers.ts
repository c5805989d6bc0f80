// What a stopped cluster might have left behind, looked up in the world rather than assumed: its
// temp dirs, any process whose command line names one of them (etcd, kube-apiserver, the scheduler
// and controller-manager take their certificates from the control plane's dir; QEMU its sockets from
// the node's state dir), and its loopback ports still accepting connections.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";

export interface Footprint {
  dirs: string[];
  ports: number[];
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.setTimeout(2000, () => done(false));
  });
}

function processesNaming(markers: string[]): string[] {
  const found: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    } catch {
      continue; // exited while we looked
    }
    if (markers.some((m) => cmdline.includes(m))) found.push(`process ${entry}: ${cmdline.slice(0, 160)}`);
  }
  return found;
}

/** Everything of `footprint` that still exists; empty when the teardown was complete. */
export async function findLeftovers(footprint: Footprint): Promise<string[]> {
  const left = footprint.dirs.filter((d) => existsSync(d)).map((d) => `directory ${d}`);
  left.push(...processesNaming(footprint.dirs));
  for (const port of footprint.ports)
    if (await accepts(port)) left.push(`127.0.0.1:${port} still accepts connections`);
  return left;
}
