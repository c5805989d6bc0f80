// A libxl-built domain's vifs wired by the lean backend while libxl builds it: the domid chosen
// before the build, the wiring once libxl's XenStore directory names the domain, and every failure
// leaving nothing behind. The deps stand for Xen and XenStore: a table of domains and names.
import test from "ava";
import type { DomainSpec } from "../types.js";
import type { LibxlBuildOptions } from "../domain-config.js";
import { buildWithLeanVifs, pickDomid, type LibxlVifDeps } from "./libxl-vifs.js";

const spec = (vifs = 1): DomainSpec => ({
  name: "web",
  guestType: "pvh",
  kernelPath: "/k",
  cmdline: "",
  memoryMiB: 128,
  vcpus: 1,
  vifs: Array.from({ length: vifs }, (_, i) => ({ bridge: "xenbr0", mac: `00:16:3e:00:00:0${i}` })),
});

/** A tiny Xen: domains with names (set when the "build" makes them), vifs wired, domains destroyed. */
function world(opts: { nameDelayPolls?: number; wireFails?: boolean } = {}) {
  const domains = new Map<number, string | undefined>([
    [0, "Domain-0"],
    [1, "other"],
  ]);
  const wired = new Set<number>();
  const destroyed: number[] = [];
  let polls = 0;
  const deps: LibxlVifDeps = {
    domids: async () => [...domains.keys()],
    nameOf: async (d) => (polls++ >= (opts.nameDelayPolls ?? 0) ? domains.get(d) : undefined),
    wire: async (d) => {
      if (opts.wireFails) throw new Error("netback said no");
      wired.add(d);
    },
    unwire: async (d) => void wired.delete(d),
    destroy: async (d) => {
      destroyed.push(d);
      domains.delete(d);
      wired.delete(d);
    },
  };
  return { deps, domains, wired, destroyed };
}

test("a domid is drawn from those neither in use nor recently destroyed", (t) => {
  const draws = [5, 6, 7, 8];
  const next = () => draws.shift()!;
  t.is(pickDomid(new Set([0, 6]), new Set([7]), next), 8, "6 in use, 7 just destroyed");
  t.is(
    pickDomid(new Set([2]), new Set(), () => 0),
    1,
  );
  for (let i = 0; i < 200; i++) {
    const d = pickDomid(new Set([0, 1, 2]));
    t.true(d >= 3 && d <= 0x7fef, String(d));
  }
});

test("the vifs are wired once libxl's directory names the domain, under the domid the build was given", async (t) => {
  const w = world({ nameDelayPolls: 3 });
  let given: LibxlBuildOptions | undefined;
  let wiredBeforeReturn = false;
  let onWired = 0;
  const domid = await buildWithLeanVifs(
    w.deps,
    spec(),
    async (o) => {
      given = o;
      w.domains.set(o.domid!, "web"); // libxl made the domain and its directory
      await new Promise((r) => setTimeout(r, 80)); // ... and goes on building (reading the stream)
      wiredBeforeReturn = w.wired.has(o.domid!);
      return o.domid!;
    },
    { onWired: () => onWired++ },
  );
  t.deepEqual(given, { domid, vifsByCaller: true });
  t.false([0, 1].includes(domid));
  t.true(wiredBeforeReturn, "wired while libxl was still building");
  t.true(w.wired.has(domid));
  t.is(onWired, 1);
});

test("a failed build leaves no vif behind, and never wires a domain libxl did not make", async (t) => {
  const w = world();
  let onWired = 0;
  const err = await t.throwsAsync(
    buildWithLeanVifs(
      w.deps,
      spec(),
      async () => {
        await new Promise((r) => setTimeout(r, 30));
        throw new Error("libxl: out of memory");
      },
      { onWired: () => onWired++ },
    ),
  );
  t.is(err?.message, "libxl: out of memory");
  t.is(w.wired.size, 0);
  t.deepEqual([...w.domains.keys()], [0, 1]);
  t.is(onWired, 1, "a migration's ready still goes out (the failure is the restore's)");
});

test("a failed wiring destroys the built domain and says why", async (t) => {
  const w = world({ wireFails: true });
  const err = await t.throwsAsync(
    buildWithLeanVifs(w.deps, spec(), async (o) => {
      w.domains.set(o.domid!, "web");
      return o.domid!;
    }),
  );
  t.regex(err?.message ?? "", /^web: its vifs: netback said no/);
  t.is(w.destroyed.length, 1);
  t.false(w.domains.has(w.destroyed[0]!));
});

test("a domain without vifs is left to Xen's domid and libxl's build", async (t) => {
  const w = world();
  let given: LibxlBuildOptions | undefined;
  const domid = await buildWithLeanVifs(w.deps, spec(0), async (o) => {
    given = o;
    return 42;
  });
  t.is(domid, 42);
  t.deepEqual(given, {});
});

test("a domain gone before its vifs could be wired fails the build instead of waiting for it", async (t) => {
  const w = world();
  const err = await t.throwsAsync(
    buildWithLeanVifs(w.deps, spec(), async (o) => o.domid!), // "built", but no directory named web
  );
  t.regex(err?.message ?? "", /^web: its vifs: web: domain \d+ is not there to wire its vifs/);
  t.is(w.wired.size, 0);
  t.is(w.destroyed.length, 1, "what is left of it is destroyed");
});
