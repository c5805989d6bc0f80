// The kubelet asks which cgroup driver to use; a Xen runtime makes no cgroups, so cgroupfs (the one
// that needs nothing from systemd) is the honest answer.
import type { Handler } from "./types.js";

export const runtimeConfig: Handler = async () => ({ linux: { cgroup_driver: "CGROUPFS" } });
