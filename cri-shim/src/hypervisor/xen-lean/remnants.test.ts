// The remnant sweeper's rules (a table), and the sweeper against an in-memory XenStore and domain
// list of our own (no Xen): late writers put nodes back, the sweeper removes them once nothing can.
import test from "ava";
import {
  backendDevices,
  CLEAN_LOOKS,
  GIVE_UP_MS,
  planRemnants,
  type RemnantLook,
  RemnantSweeper,
  remnantDirs,
} from "./remnants.js";

const look = (l: Partial<RemnantLook>): RemnantLook => ({
  xen: "absent",
  dirs: [],
  devices: 0,
  cleanLooks: 0,
  ageMs: 1000,
  ...l,
});
const D = "/local/domain/7";
const BE = "/local/domain/0/backend/vif/7";

const table: [string, Partial<RemnantLook>, ReturnType<typeof planRemnants>][] = [
  [
    "a live domain has the domid again: its nodes are its own",
    { xen: "live", dirs: [D] },
    { do: "done", why: "reused" },
  ],
  ["dying: xenconsoled may still write", { xen: "dying", dirs: [D] }, { do: "wait", clean: false }],
  ["gone, with a node put back: removed", { dirs: [D, BE] }, { do: "remove", dirs: [D, BE] }],
  ["gone, nodes gone, the kernel's device not yet", { devices: 1 }, { do: "wait", clean: false }],
  [
    "gone, nodes put back while the device unregisters: removed",
    { dirs: [BE], devices: 1 },
    { do: "remove", dirs: [BE] },
  ],
  ["a first clean look is not the last", { cleanLooks: CLEAN_LOOKS - 2 }, { do: "wait", clean: true }],
  ["enough clean looks in a row end it", { cleanLooks: CLEAN_LOOKS - 1 }, { do: "done", why: "clean" }],
  [
    "still dying after the limit: given up",
    { xen: "dying", ageMs: GIVE_UP_MS + 1 },
    { do: "giveUp", why: "the domain is still dying" },
  ],
  [
    "a device left after the limit: given up",
    { devices: 2, ageMs: GIVE_UP_MS + 1 },
    { do: "giveUp", why: "2 xenbus device(s) remain" },
  ],
  [
    "nodes after the limit are still removed",
    { dirs: [D], ageMs: GIVE_UP_MS + 1 },
    { do: "remove", dirs: [D] },
  ],
  [
    "a reused domid wins over the limit",
    { xen: "live", ageMs: GIVE_UP_MS + 1 },
    { do: "done", why: "reused" },
  ],
];
for (const [name, l, want] of table)
  test(`planRemnants: ${name}`, (t) => t.deepEqual(planRemnants(look(l)), want));

test("backendDevices counts the kernel's xenbus devices per domid, nothing else", (t) => {
  const m = backendDevices(["vif-7-0", "vif-7-1", "vif-12-0", "vbd-3-51712", "console", "vif-x-0", "vif7.0"]);
  t.deepEqual([...m].sort(), [
    [12, 1],
    [3, 1],
    [7, 2],
  ]);
});

/** A XenStore tree as a set of paths (a directory exists while a path under it does). */
class Tree {
  paths = new Set<string>();
  removes: string[] = [];
  add(p: string) {
    this.paths.add(p);
  }
  async list(path: string): Promise<string[] | undefined> {
    const kids = new Set<string>();
    let found = false;
    for (const p of this.paths)
      if (p === path || p.startsWith(`${path}/`)) {
        found = true;
        const rest = p.slice(path.length + 1);
        if (rest) kids.add(rest.split("/")[0]!);
      }
    return found ? [...kids] : undefined;
  }
  async remove(path: string): Promise<void> {
    this.removes.push(path);
    for (const p of [...this.paths]) if (p === path || p.startsWith(`${path}/`)) this.paths.delete(p);
  }
}

function world() {
  const xs = new Tree();
  const domains = new Map<number, boolean>([[0, false]]); // domid -> dying
  const devices = new Set<string>();
  let clock = 0;
  const counts: Record<string, number> = {};
  const sweeper = new RemnantSweeper(
    {
      xs,
      domains: async () => [...domains].map(([domid, dying]) => ({ domid, dying })),
      devices: () => [...devices],
      count: (o, n) => void (counts[o] = (counts[o] ?? 0) + n),
    },
    () => clock,
  );
  return { xs, domains, devices, sweeper, counts, tick: (ms: number) => (clock += ms) };
}

test("a console/tty xenconsoled writes after the destroy is removed once the domain is gone", async (t) => {
  const w = world();
  w.xs.add("/local/domain/0/name");
  w.domains.set(7, true); // destroyed, dying: xenconsoled still maps its ring
  w.sweeper.watch(7);
  w.xs.add("/local/domain/7/console/tty"); // written after sfx_destroy's removal
  await w.sweeper.lookOnce();
  t.true(w.xs.paths.has("/local/domain/7/console/tty"), "left alone while the domain is dying");
  w.domains.delete(7);
  await w.sweeper.lookOnce();
  t.deepEqual(w.xs.removes, ["/local/domain/7"]);
  t.deepEqual([...w.xs.paths], ["/local/domain/0/name"]);
  for (let i = 0; i < CLEAN_LOOKS; i++) await w.sweeper.lookOnce();
  t.deepEqual([...w.sweeper.domids()], [], "two clean looks end the watch");
  t.deepEqual(w.counts, { removed: 1 });
});

test("a backend netback's probe put back is removed, and the watch lasts until the kernel's device goes", async (t) => {
  const w = world();
  w.sweeper.watch(7);
  w.xs.add("/local/domain/0/backend/vif/7/0/feature-sg");
  w.xs.add("/local/domain/0/error/backend/vif/7/0/error");
  w.devices.add("vif-7-0");
  await w.sweeper.lookOnce();
  t.deepEqual(w.xs.removes.sort(), ["/local/domain/0/backend/vif/7", "/local/domain/0/error/backend/vif/7"]);
  for (let i = 0; i < 5; i++) await w.sweeper.lookOnce();
  t.deepEqual([...w.sweeper.domids()], [7], "the device is still there: netback may write again");
  w.devices.delete("vif-7-0");
  for (let i = 0; i < CLEAN_LOOKS; i++) await w.sweeper.lookOnce();
  t.deepEqual([...w.sweeper.domids()], []);
});

test("a domid a new domain took is left to it", async (t) => {
  const w = world();
  w.sweeper.watch(7);
  w.domains.set(7, false);
  w.xs.add("/local/domain/7/name");
  await w.sweeper.lookOnce();
  t.deepEqual(w.xs.removes, []);
  t.deepEqual([...w.sweeper.domids()], []);
});

test("a domain that never finishes dying is given up on after the limit, counted", async (t) => {
  const w = world();
  w.domains.set(7, true);
  w.sweeper.watch(7);
  await w.sweeper.lookOnce();
  t.deepEqual([...w.sweeper.domids()], [7]);
  w.tick(GIVE_UP_MS + 1);
  await w.sweeper.lookOnce();
  t.deepEqual([...w.sweeper.domids()], []);
  t.deepEqual(w.counts, { givenUp: 1 });
});

test("adoptOrphans watches the domids with dom0 nodes and no domain, never dom0's or a live one's", async (t) => {
  const w = world();
  w.domains.set(3, false);
  for (const p of [
    "/local/domain/0/name",
    "/local/domain/3/name",
    "/local/domain/0/backend/vif/3/0/state",
    "/local/domain/9/console/tty",
    "/local/domain/0/backend/vif/11/0/feature-sg",
    "/local/domain/0/error/backend/vif/12/0/error",
  ])
    w.xs.add(p);
  t.deepEqual((await w.sweeper.adoptOrphans()).sort(), [11, 12, 9]);
  await w.sweeper.lookOnce();
  t.deepEqual([...w.xs.paths].sort(), [
    "/local/domain/0/backend/vif/3/0/state",
    "/local/domain/0/name",
    "/local/domain/3/name",
  ]);
  t.deepEqual(remnantDirs(9), [
    "/local/domain/9",
    "/local/domain/0/backend/vif/9",
    "/local/domain/0/error/backend/vif/9",
  ]);
});

test("settled() resolves once the timer-driven looks end the watch; close() ends it too", async (t) => {
  const w = world();
  w.sweeper.watch(7);
  w.xs.add("/local/domain/7/console/tty");
  await w.sweeper.settled();
  t.false(w.xs.paths.has("/local/domain/7/console/tty"));
  t.deepEqual([...w.sweeper.domids()], []);
  t.deepEqual([...w.sweeper.recent()], [7], "a domid destroyed lately is still avoided after its watch");
  w.domains.set(8, true);
  w.sweeper.watch(8);
  const s = w.sweeper.settled();
  w.sweeper.close();
  await s;
  t.deepEqual([...w.sweeper.domids()], []);
  w.sweeper.watch(9);
  t.deepEqual([...w.sweeper.domids()], [], "a closed sweeper watches nothing");
});
