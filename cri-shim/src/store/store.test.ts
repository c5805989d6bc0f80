// The store on a real directory: what reaches disk, what a restart reads back, and how it treats the
// leftovers of a crash (a temp file of an interrupted write, a corrupt record).
import test from "ava";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "./store.js";

interface Meta {
  id: string;
  name: string;
}
interface Status {
  state: string;
  n: number;
}
const id = (c: string) => c.repeat(64);

test("status changes only through update(fn), each persisted; metadata is frozen", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-store-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = new Store<Meta, Status>(dir, "thing");
  await s.load();
  const e = await s.create({ id: id("a"), name: "x" }, { state: "new", n: 0 });
  t.throws(() => {
    (e.meta as Meta).name = "changed";
  });
  t.throws(() => {
    (e.status as Status).n = 5;
  });
  await Promise.all(Array.from({ length: 20 }, () => s.update(id("a"), (st) => ({ ...st, n: st.n + 1 }))));
  t.is(s.get(id("a"))?.status.n, 20, "serialized updates lose nothing");
  t.deepEqual(JSON.parse(readFileSync(join(dir, `${id("a")}.json`), "utf8")), {
    meta: { id: id("a"), name: "x" },
    status: { state: "new", n: 20 },
  });
  await t.throwsAsync(s.create({ id: id("a"), name: "y" }, { state: "new", n: 0 }), {
    message: /already exists/,
  });
  await t.throwsAsync(
    s.update(id("b"), (st) => st),
    { message: /not found/ },
  );
  t.is(s.resolve("aaaa")?.meta.id, id("a"), "unique prefix");
  await s.delete(id("a"));
  t.deepEqual(readdirSync(dir), []);
});

test("a restart reads records back, drops temp files and sets corrupt records aside", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sf-store-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = new Store<Meta, Status>(dir, "thing");
  await first.load();
  await first.create({ id: id("c"), name: "kept" }, { state: "ready", n: 1 });
  writeFileSync(join(dir, `${id("d")}.json.tmp-1234abcd`), '{"meta":'); // a write cut short
  writeFileSync(join(dir, `${id("e")}.json`), "not json");
  const second = new Store<Meta, Status>(dir, "thing");
  const loaded = await second.load();
  t.deepEqual(
    loaded.map((e) => e.meta.name),
    ["kept"],
  );
  t.deepEqual(readdirSync(dir).sort(), [`${id("c")}.json`, `${id("e")}.json.corrupt`]);
});
