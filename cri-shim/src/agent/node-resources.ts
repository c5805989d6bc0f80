// The node's guest memory as an extended resource on its own Node (capacity and allocatable, MiB):
// what Xen can give guests, not dom0's memory, so that the scheduler counts a VM's memory where it
// lives. Every VM pod requests its guest memory there (operator/src/desired.ts). The kubelet keeps
// allocatable equal to capacity for a resource it does not manage; patching both makes the figure
// schedulable at once, kubelet or not. Patched only when the figure moves by more than a little,
// so a node with a thousand guests does not rewrite its Node on every domain built.
import { logger } from "../../../lib/log.js";
import { parseQuantity, RESOURCES } from "../../../api/index.js";
import type { KubeClient } from "../../../lib/kube/client.js";
import { paths } from "../../../lib/kube/client.js";

const log = logger("node-agent");

/** A change smaller than this (MiB, or 1 % of the figure if larger) is not worth a Node write. */
const SLACK_MIB = 4;

export function worthPublishing(published: number | undefined, measured: number): boolean {
  if (published === undefined) return true;
  return Math.abs(published - measured) > Math.max(SLACK_MIB, Math.floor(published / 100));
}

export class NodeResources {
  constructor(
    private readonly client: KubeClient,
    private readonly nodeName: string,
    private readonly measure: () => Promise<number>,
  ) {}

  /**
   * Compares with what the Node shows (a re-registered Node may have lost it), patches if needed.
   * Throws while the Node is not registered yet (the queue retries with backoff).
   */
  async publish(): Promise<void> {
    const mib = await this.measure();
    const node = await this.client.request<{ status?: { capacity?: Record<string, string> } }>({
      method: "GET",
      path: `${paths.nodes()}/${this.nodeName}`,
    });
    const shown = node.status?.capacity?.[RESOURCES.guestMemoryMiB];
    if (!worthPublishing(shown === undefined ? undefined : parseQuantity(shown), mib)) return;
    const value = String(Math.max(0, mib));
    await this.client.request({
      method: "PATCH",
      path: `${paths.nodes()}/${this.nodeName}/status`,
      body: {
        status: {
          capacity: { [RESOURCES.guestMemoryMiB]: value },
          allocatable: { [RESOURCES.guestMemoryMiB]: value },
        },
      },
      contentType: "application/merge-patch+json",
    });
    log.info("guest memory published on the node", {
      node: this.nodeName,
      resource: RESOURCES.guestMemoryMiB,
      mib,
    });
  }
}
