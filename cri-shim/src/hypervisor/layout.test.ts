// The koffi struct layouts in libxl-structs.ts must match the C headers byte for byte, or libxl would
// read and write the wrong fields. This compiles layout-probe.c against the installed libxen-dev
// headers and compares every size, offset and constant we rely on.
import test from "ava";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import koffi, { type TypeObject } from "koffi";
import { REPO_ROOT } from "../../../lib/paths.js";
import {
  DOMAIN_CONFIG_BUFFER_BYTES,
  ERROR_DOMAIN_NOTFOUND,
  ERROR_INVAL,
  ERROR_NOMEM,
  LIBXL_CONSOLE_TYPE_PV,
  LIBXL_SIGCHLD_OWNER_MAINLOOP,
  LIBXL_SUSPEND_LIVE,
  XTL_LEVELS,
  XTL_STDIOSTREAM_HIDE_PROGRESS,
  libxlBindings,
} from "./libxl-ffi.js";
import {
  BitmapType,
  ChildprocHooksType,
  DominfoType,
  PhysinfoType,
  RestoreParamsType,
  VersionInfoType,
} from "./libxl-structs.js";

interface ProbeStruct {
  size: number;
  offsets: Record<string, number>;
}
type Probe = Record<string, ProbeStruct> & { constants: Record<string, number> };

function runProbe(): Probe {
  const dir = mkdtempSync(join(tmpdir(), "sf-layout-"));
  try {
    const exe = join(dir, "probe");
    execFileSync("gcc", [
      "-Wall",
      "-Werror",
      "-o",
      exe,
      join(REPO_ROOT, "cri-shim/src/hypervisor/layout-probe.c"),
    ]);
    return JSON.parse(execFileSync(exe, { encoding: "utf8" })) as Probe;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const probe = runProbe();

const structs: [string, TypeObject][] = [
  ["libxl_dominfo", DominfoType],
  ["libxl_physinfo", PhysinfoType],
  ["libxl_version_info", VersionInfoType],
  ["libxl_bitmap", BitmapType],
  ["libxl_domain_restore_params", RestoreParamsType],
  ["libxl_childproc_hooks", ChildprocHooksType],
];

for (const [name, type] of structs) {
  test(`${name}: koffi layout matches the C header`, (t) => {
    const c = probe[name];
    if (c === undefined) return t.fail(`probe did not report ${name}`);
    t.is(koffi.sizeof(type), c.size, "sizeof");
    const members = Object.keys(koffi.type(type).members ?? {});
    t.deepEqual(members, Object.keys(c.offsets), "member list and order");
    for (const [member, offset] of Object.entries(c.offsets))
      t.is(koffi.offsetof(type, member), offset, `offsetof ${member}`);
  });
}

test("libxl_domain_config fits the opaque buffer we give libxl", (t) => {
  const size = probe["libxl_domain_config"]?.size ?? Infinity;
  t.true(size <= DOMAIN_CONFIG_BUFFER_BYTES, `sizeof(libxl_domain_config) = ${size}`);
});

test("constants match the headers", (t) => {
  t.deepEqual(probe.constants, {
    LIBXL_SUSPEND_LIVE,
    LIBXL_CONSOLE_TYPE_PV,
    libxl_sigchld_owner_mainloop: LIBXL_SIGCHLD_OWNER_MAINLOOP,
    XTL_WARN: XTL_LEVELS.warn,
    XTL_STDIOSTREAM_HIDE_PROGRESS,
    ERROR_DOMAIN_NOTFOUND,
    ERROR_NOMEM,
    ERROR_INVAL,
  });
});

test("every bound C symbol resolves in the installed libraries", (t) => {
  // Binding resolves each symbol with dlsym; a typo or an ABI change throws here, not in dom0.
  const lib = libxlBindings();
  t.true(Object.keys(lib).length >= 30);
});
