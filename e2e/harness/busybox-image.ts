// One layer of Debian's static busybox with its applets as symlinks, a passwd and group, /tmp: the
// base of the tests' small Linux container images (critest's stand-ins, the e2e cluster's pause and
// DaemonSet images). `extra` entries (a web root, a script) go into the same layer.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { buildLayer, type TarWriteEntry } from "../../lib/oci/index.js";

export function busyboxLayer(extra: TarWriteEntry[] = []): ReturnType<typeof buildLayer> {
  const applets = spawnSync("/bin/busybox", ["--list"], { encoding: "utf8" }).stdout.trim().split("\n");
  return buildLayer([
    { path: "bin", type: "directory", mode: 0o755 },
    { path: "bin/busybox", data: readFileSync("/bin/busybox"), mode: 0o755 },
    ...applets
      .filter((a) => a && a !== "busybox")
      .map((a) => ({ path: `bin/${a}`, type: "symlink" as const, linkTarget: "busybox" })),
    { path: "etc", type: "directory", mode: 0o755 },
    {
      path: "etc/passwd",
      data: Buffer.from("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
      mode: 0o644,
    },
    { path: "etc/group", data: Buffer.from("root:x:0:\nnogroup:x:65534:\n"), mode: 0o644 },
    { path: "tmp", type: "directory", mode: 0o1777 },
    ...extra,
  ]);
}
