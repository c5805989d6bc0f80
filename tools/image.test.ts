// `npm run image` as a user runs it (the compiled CLI in a child process) against a real registry;
// skopeo reads the OCI layout it wrote as an independent check.
import anyTest, { type TestFn } from "ava";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startRegistry, type TestRegistry } from "../e2e/harness/registry.js";
import { ImageStore } from "../lib/oci/index.js";
import { REPO_ROOT } from "../lib/paths.js";

const exec = promisify(execFile);
const TOOL = join(REPO_ROOT, "dist", "tools", "image.js");
const HELLO = join(REPO_ROOT, "native", "build", "hello", "hello");

interface Ctx {
  plain: TestRegistry;
  secure: TestRegistry;
  work: string;
}
const test = anyTest as TestFn<Ctx>;

test.before(async (t) => {
  const [plain, secure] = await Promise.all([startRegistry(), startRegistry({ tls: true })]);
  t.context = { plain, secure, work: await mkdtemp(join(tmpdir(), "sf-image-tool-test-")) };
});
test.after.always(async (t) => {
  await Promise.all([
    t.context.plain?.stop(),
    t.context.secure?.stop(),
    t.context.work ? rm(t.context.work, { recursive: true, force: true }) : undefined,
  ]);
});

async function image(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [TOOL, ...args], {
      env: { ...process.env, LOG_LEVEL: "warn", ...env },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

async function fakeKernel(dir: string, name: string, bytes: number): Promise<string> {
  const path = join(dir, name);
  const data = Buffer.alloc(bytes, 0x90);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46]).copy(data);
  await writeFile(path, data);
  return path;
}

test("build writes an OCI layout skopeo can read, pushes it, and inspect reads it back", async (t) => {
  const { plain, work } = t.context;
  const kernel = await fakeKernel(work, "kernel-a", 30_000);
  const initrd = await fakeKernel(work, "initrd-a", 5_000);
  const layout = join(work, "layout-a");
  const ref = `${plain.host}/tool/hello:v1`;
  const built = await image([
    "build",
    kernel,
    "--initrd",
    initrd,
    "--cmdline",
    "console=hvc0 MSG=hi",
    "--memory",
    "8Mi",
    "--guest-type",
    "pvh",
    "--tag",
    ref,
    "--insecure",
    "--layout",
    layout,
  ]);
  t.is(built.code, 0, built.stderr);
  const out = JSON.parse(built.stdout) as {
    digest: string;
    sizeBytes: number;
    pushed: boolean;
    config: Record<string, unknown>;
  };
  t.true(out.pushed);
  t.like(out.config, {
    guestType: "pvh",
    memoryMiB: 8,
    cmdline: "console=hvc0 MSG=hi",
    initrdPath: "unikernel/initrd",
  });

  const fromLayout = JSON.parse((await exec("skopeo", ["inspect", `oci:${layout}:${ref}`])).stdout) as {
    Digest: string;
    Labels: Record<string, string>;
  };
  t.is(fromLayout.Digest, out.digest);
  t.is(fromLayout.Labels["superfluid.dev/unikernel.memory-mib"], "8");

  const inspected = await image(["inspect", ref, "--insecure"]);
  t.is(inspected.code, 0, inspected.stderr);
  const info = JSON.parse(inspected.stdout) as {
    digest: string;
    sizeBytes: number;
    config: Record<string, unknown>;
  };
  t.is(info.digest, out.digest);
  t.is(info.sizeBytes, out.sizeBytes);
  t.deepEqual(info.config, out.config);

  // The same build twice gives the same digest: builds are reproducible.
  const again = await image([
    "build",
    kernel,
    "--initrd",
    initrd,
    "--cmdline",
    "console=hvc0 MSG=hi",
    "--memory",
    "8Mi",
    "--guest-type",
    "pvh",
    "--tag",
    ref,
    "--no-push",
  ]);
  t.is((JSON.parse(again.stdout) as { digest: string }).digest, out.digest);
});

test("build pushes over TLS with --ca and --user; a wrong password fails with a clear message", async (t) => {
  const { secure, work } = t.context;
  const kernel = await fakeKernel(work, "kernel-b", 4096);
  const ref = `${secure.host}/tool/secure:v1`;
  const user = `${secure.user!.username}:${secure.user!.password}`;
  const ok = await image(["build", kernel, "--tag", ref, "--ca", secure.caFile!, "--user", user]);
  t.is(ok.code, 0, ok.stderr);
  const bad = await image([
    "build",
    kernel,
    "--tag",
    ref,
    "--ca",
    secure.caFile!,
    "--user",
    `${secure.user!.username}:nope`,
  ]);
  t.is(bad.code, 1);
  t.regex(
    bad.stderr,
    /image: registry 127\.0\.0\.1:\d+ refused user "superfluid" \(HTTP 401: wrong username or password\?\)/,
  );
  const inspected = await image(["inspect", ref, "--ca", secure.caFile!, "--user", user]);
  t.is(inspected.code, 0, inspected.stderr);
});

test("bad usage exits 2 with the usage text; a missing kernel file exits 1 and leaves no temp layout", async (t) => {
  const noTag = await image(["build", "/nonexistent"]);
  t.is(noTag.code, 2);
  t.regex(noTag.stderr, /build needs --tag <ref>[\s\S]*usage:/);
  const missing = await image(["build", "/nonexistent/kernel", "--tag", "127.0.0.1:1/x:y"]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /image: ENOENT: no such file or directory, open '\/nonexistent\/kernel'/);
  const kernel = await fakeKernel(t.context.work, "kernel-c", 100);
  const badMem = await image(["build", kernel, "--tag", "127.0.0.1:1/x:y", "--memory", "lots"]);
  t.is(badMem.code, 2);
  t.regex(badMem.stderr, /--memory: expected a size like 8Mi/);
  const badGuest = await image(["build", kernel, "--tag", "127.0.0.1:1/x:y", "--guest-type", "hvm"]);
  t.is(badGuest.code, 2);
  t.regex(badGuest.stderr, /--guest-type must be one of pv, pvh/);
  const unknown = await image(["frobnicate"]);
  t.is(unknown.code, 2);
  // A private TMPDIR shows the failed push removed its temp layout.
  const tmp = await mkdtemp(join(t.context.work, "tmp-"));
  const unreachable = await image(["build", kernel, "--tag", "127.0.0.1:1/x:y", "--insecure"], {
    TMPDIR: tmp,
  });
  t.is(unreachable.code, 1);
  t.regex(
    unreachable.stderr,
    /image: POST http:\/\/127\.0\.0\.1:1\/v2\/x\/blobs\/uploads\/: connect ECONNREFUSED|ECONNREFUSED/,
  );
  t.deepEqual(await readdir(tmp), [], "the temp layout was removed");
});

test("the real hello unikernel: packed, pushed, pulled back byte for byte; sizes printed", async (t) => {
  // npm run setup builds native/; a missing kernel is a broken setup, not a reason to skip.
  if (!existsSync(HELLO)) {
    t.fail(`${HELLO} not built: run \`npm run setup\` (make -C native)`);
    return;
  }
  const { plain, work } = t.context;
  const ref = `${plain.host}/superfluid/hello:test`;
  const built = await image(["build", HELLO, "--memory", "4Mi", "--tag", ref, "--insecure"]);
  t.is(built.code, 0, built.stderr);
  const out = JSON.parse(built.stdout) as { digest: string; sizeBytes: number; kernelBytes: number };
  const store = new ImageStore(join(work, "store-hello"));
  const record = await store.pull(ref, { plainHttp: true });
  t.is(record.digest, out.digest);
  t.deepEqual(await readFile(record.kernelPath), await readFile(HELLO));
  const kernelBytes = (await stat(HELLO)).size;
  t.true(kernelBytes <= 256 * 1024, `hello is ${kernelBytes} bytes, the target is <= 256 KiB`);
  t.is(record.config.memoryMiB, 4);
  t.log(
    `hello: kernel ${kernelBytes} B, image ${out.sizeBytes} B (manifest+config+gzip layer), default memory ${record.config.memoryMiB} MiB, store use ${(await store.fsInfo()).usedBytes} B`,
  );
});
