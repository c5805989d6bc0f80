// The image store as the CRI services see it. lib/oci's ImageStore provides it (main.ts adapts it);
// the shape is kept narrow so the services do not depend on how images are fetched or stored.
import type { GuestType } from "../hypervisor/types.js";

export interface ImageInfo {
  /** Config digest ("sha256:..."). */
  id: string;
  refs: string[];
  repoDigests: string[];
  sizeBytes: number;
  kernelPath: string;
  initrdPath?: string;
  config: { guestType: GuestType; cmdline: string; memoryMiB?: number };
}

export interface PullAuth {
  username?: string;
  password?: string;
  auth?: string;
  registryToken?: string;
}

export interface ImageBackend {
  pull(ref: string, auth?: PullAuth): Promise<ImageInfo>;
  /** By reference, id or unique id prefix; undefined when not present. */
  get(refOrId: string): Promise<ImageInfo | undefined>;
  list(): Promise<ImageInfo[]>;
  /** No-op when absent. */
  remove(refOrId: string): Promise<void>;
  fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number }>;
}
