// The image store as the CRI services see it. lib/oci's ImageStore provides it (main.ts adapts it);
// the shape is kept narrow so the services do not depend on how images are fetched or stored.
import type { GuestType } from "../hypervisor/types.js";
import type { AuthConfig } from "../proto.js";

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

/** The CRI AuthConfig as the registry client takes it; undefined when it carries no credential. */
export function pullAuthOf(a: AuthConfig | null | undefined): PullAuth | undefined {
  return a && (a.username || a.auth || a.registry_token || a.identity_token)
    ? {
        username: a.username || undefined,
        password: a.password || undefined,
        auth: a.auth || undefined,
        registryToken: a.registry_token || a.identity_token || undefined,
      }
    : undefined;
}

/** What an image is, read from its registry without fetching layers. */
export type ImageFormat = "unikernel" | "linux";

export interface ImageBackend {
  /** unikernel when the image carries a unikernel config (even a broken one: pull explains), else linux. */
  format(ref: string, auth?: PullAuth): Promise<ImageFormat>;
  pull(ref: string, auth?: PullAuth): Promise<ImageInfo>;
  /** By reference, id or unique id prefix; undefined when not present. */
  get(refOrId: string): Promise<ImageInfo | undefined>;
  list(): Promise<ImageInfo[]>;
  /** No-op when absent. */
  remove(refOrId: string): Promise<void>;
  fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number }>;
}
