import { nowNs } from "../proto.js";
import type { Handler } from "./types.js";

export const imageFsInfo: Handler = async (rt) => {
  const fs = await rt.images.fsInfo();
  const usage = {
    timestamp: nowNs(),
    fs_id: { mountpoint: fs.mountpoint },
    used_bytes: { value: String(fs.usedBytes) },
    inodes_used: { value: String(fs.inodesUsed) },
  };
  // Unikernels have no writable container layer; the image store is the only file system we use.
  return { image_filesystems: [usage], container_filesystems: [usage] };
};
