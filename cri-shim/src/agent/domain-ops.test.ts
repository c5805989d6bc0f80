// DomainOps and the CRI's view of a suspended container, over the real CRI services (gRPC, stores,
// exit monitor, recovery) with the in-memory hypervisor TEST DOUBLE taught to save and restore (the
// Xen proof is agent.xen.test.ts). Assertions look at the files, the records and the CRI answers.
import test from "ava";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
  existsSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DomainSpec } from "../hypervisor/types.js";
import { DirImagesDouble } from "../testing/dir-images.js";
import { MemoryHypervisorDouble } from "../testing/memory-hypervisor.js";
import { startUnitShim, type UnitShim } from "../testing/unit-shim.js";
import { checkpointPath, DomainOps, fileExists } from "./domain-ops.js";

/** TEST DOUBLE: save writes the domain's name into the fd and removes the domain; restore reads it back. */
class SavingHypervisorDouble extends MemoryHypervisorDouble {
  // Rest parameters: the base class declares these without any (it does not model them).
  override async save(...args: unknown[]): Promise<void> {
    const [domid, fd] = args as [number, number];
    const d = await this.info(domid);
    if (!d) throw new Error(`no domain ${domid}`);
    writeSync(fd, `SAVED ${d.name}\n`);
    await this.destroy(domid);
  }
  override async restore(...args: unknown[]): Promise<number> {
    const [spec, fd, opts = {}] = args as [DomainSpec, number, { paused?: boolean }?];
    const text = readFileSync(fd, "utf8");
    if (text !== `SAVED ${spec.name}\n`) throw new Error("not a checkpoint of this domain");
    const domid = await this.createPaused(spec);
    if (!opts.paused) await this.unpause(domid);
    return domid;
  }
}

const IMAGE = "registry.test/hello:1";

async function setup(t: {
  teardown: (fn: () => Promise<void>) => void;
}): Promise<{ shim: UnitShim; ops: DomainOps; ctr: string; ckpt: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "sf-agent-"));
  const shim = await startUnitShim({
    dir,
    hv: new SavingHypervisorDouble(),
    images: new DirImagesDouble(join(dir, "images")),
  });
  t.teardown(() => shim.dispose());
  shim.images.available.add(IMAGE);
  await shim.cri.image("PullImage", { image: { image: IMAGE } });
  const config = {
    metadata: { name: "v", namespace: "default", uid: "uid-v", attempt: 0 },
    hostname: "v",
    log_directory: join(dir, "logs"),
    annotations: { "superfluid.dev/vm": "default/v" },
  };
  const { pod_sandbox_id: sb } = await shim.cri.runtime<{ pod_sandbox_id: string }>("RunPodSandbox", {
    config,
  });
  const { container_id: ctr } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: { metadata: { name: "main", attempt: 0 }, image: { image: IMAGE }, log_path: "main/0.log" },
    sandbox_config: config,
  });
  await shim.cri.runtime("StartContainer", { container_id: ctr });
  const ckptDir = join(dir, "checkpoints");
  return {
    shim,
    ops: new DomainOps(shim.runtime.ctx, shim.runtime.containers, ckptDir),
    ctr,
    ckpt: checkpointPath(ckptDir, "0f9e-uid"),
    dir,
  };
}

const criState = async (shim: UnitShim, ctr: string) =>
  (await shim.cri.runtime<{ status: { state: string } }>("ContainerStatus", { container_id: ctr })).status
    .state;

test("fileExists: a regular file is there; a missing path, a directory or a path under a file is not", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-file-exists-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "uid-1.ckpt");
  writeFileSync(file, "x");
  t.true(await fileExists(file));
  t.false(await fileExists(join(dir, "uid-2.ckpt")), "missing");
  t.false(await fileExists(dir), "a directory is not a checkpoint file");
  t.false(await fileExists(join(file, "below")), "ENOTDIR is a no, not a throw");
});

test("suspend: checkpoint whole on disk, no domain, the CRI still says running across monitor passes; restore: new domid, checkpoint gone", async (t) => {
  const { shim, ops, ctr, ckpt } = await setup(t);
  const before = shim.runtime.ctx.containers.get(ctr)!;
  const oldDomid = before.status.domid!;
  await ops.suspend(before, ckpt);
  t.deepEqual(readdirSync(join(ckpt, "..")), ["0f9e-uid.ckpt"], "the checkpoint and no temp file");
  t.deepEqual(await shim.hv.list(), [], "no domain");
  const rec = shim.runtime.ctx.containers.get(ctr)!.status;
  t.is(rec.domid, undefined);
  t.is(rec.suspended?.checkpoint, ckpt);
  t.regex(rec.suspended?.sha256 ?? "", /^[0-9a-f]{64}$/);
  await new Promise((r) => setTimeout(r, 300)); // six exit-monitor passes
  t.is(await criState(shim, ctr), "CONTAINER_RUNNING", "a suspended container is not an exited one");

  await ops.restore(shim.runtime.ctx.containers.get(ctr)!, false);
  const after = shim.runtime.ctx.containers.get(ctr)!.status;
  const [dom] = await shim.hv.list();
  t.is(dom?.state, "running");
  t.is(after.domid, dom?.domid);
  t.not(after.domid, oldDomid);
  t.is(after.suspended, undefined);
  t.false(existsSync(ckpt), "the checkpoint is deleted after the restore");
  t.is(await criState(shim, ctr), "CONTAINER_RUNNING");
});

test("a corrupt checkpoint is refused before the hypervisor sees it; nothing is built", async (t) => {
  const { shim, ops, ctr, ckpt } = await setup(t);
  await ops.suspend(shim.runtime.ctx.containers.get(ctr)!, ckpt);
  writeFileSync(ckpt, "SAVED sf-something-else\n");
  await t.throwsAsync(ops.restore(shim.runtime.ctx.containers.get(ctr)!, false), {
    message: /is corrupt: sha256/,
  });
  t.deepEqual(await shim.hv.list(), []);
  t.truthy(shim.runtime.ctx.containers.get(ctr)!.status.suspended, "still suspended");
  t.true(existsSync(ckpt), "the checkpoint is kept");
});

test("a shim restart keeps a suspended container (not DomainLost); StopContainer then drops the checkpoint", async (t) => {
  const { shim, ops, ctr, ckpt } = await setup(t);
  await ops.suspend(shim.runtime.ctx.containers.get(ctr)!, ckpt);
  const again = await shim.restart();
  t.is(await criState(again, ctr), "CONTAINER_RUNNING");
  t.truthy(again.runtime.ctx.containers.get(ctr)!.status.suspended);
  await again.cri.runtime("StopContainer", { container_id: ctr, timeout: 0 });
  const st = await again.cri.runtime<{ status: { state: string; reason: string } }>("ContainerStatus", {
    container_id: ctr,
  });
  t.like(st.status, { state: "CONTAINER_EXITED", reason: "Stopped" });
  t.false(existsSync(ckpt), "the checkpoint went with the container");
  await again.dispose();
});
