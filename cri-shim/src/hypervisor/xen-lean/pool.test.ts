// The shell pool's rules against a builder double (our own ShellBuilder interface, no Xen).
import test from "ava";
import { parseShapes, type Shape, type ShellBuilder, ShellPool, shapeKey } from "./pool.js";

const S4: Shape = { memoryMiB: 4, maxMemoryMiB: 4, vcpus: 1, maxVcpus: 1 };
const S8: Shape = { memoryMiB: 8, maxMemoryMiB: 8, vcpus: 1, maxVcpus: 1 };

class FakeBuilder implements ShellBuilder {
  next = 1;
  live = new Map<number, { name: string; shape: Shape }>();
  freeMiB = 1000;
  async prepare(name: string, shape: Shape): Promise<number> {
    await Promise.resolve();
    const d = this.next++;
    this.live.set(d, { name, shape });
    this.freeMiB -= shape.memoryMiB;
    return d;
  }
  async destroy(domid: number): Promise<void> {
    const s = this.live.get(domid);
    if (s) this.freeMiB += s.shape.memoryMiB;
    this.live.delete(domid);
  }
  async freeKiB(): Promise<number> {
    return this.freeMiB * 1024;
  }
}

test("fills configured shapes to depth, names shells sf-shell-", async (t) => {
  const b = new FakeBuilder();
  const pool = new ShellPool(b, { depth: 2, maxMiB: 100, shapes: [S4] });
  pool.kick();
  await pool.idle();
  t.deepEqual([...pool.depths()], [[shapeKey(S4), 2]]);
  t.true([...b.live.values()].every((s) => s.name.startsWith("sf-shell-4m1c-")));
  t.is(pool.heldMiB(), 8);
});

test("take hands out a shell and refills; an unknown shape is learned, not served", async (t) => {
  const b = new FakeBuilder();
  const pool = new ShellPool(b, { depth: 1, maxMiB: 100, shapes: [S4] });
  pool.kick();
  await pool.idle();
  const d = pool.take(S4);
  t.is(typeof d, "number");
  t.is(pool.take(S8), undefined);
  pool.kick();
  await pool.idle();
  t.is(pool.depths().get(shapeKey(S4)), 1);
  t.is(pool.depths().get(shapeKey(S8)), 1);
  t.not(pool.take(S4), d);
});

test("respects the pool's memory cap and Xen's reserve", async (t) => {
  const b = new FakeBuilder();
  const capped = new ShellPool(b, { depth: 10, maxMiB: 12, shapes: [S4] });
  capped.kick();
  await capped.idle();
  t.is(capped.heldMiB(), 12);
  const tight = new FakeBuilder();
  tight.freeMiB = 80;
  const reserved = new ShellPool(tight, { depth: 10, maxMiB: 1000, shapes: [S4], reserveMiB: 64 });
  reserved.kick();
  await reserved.idle();
  t.is(reserved.heldMiB(), 16); // 80 - 4*4 = 64 left
});

test("a shape pushed out of the recent ones gives its shells back", async (t) => {
  const b = new FakeBuilder();
  const pool = new ShellPool(b, { depth: 1, maxMiB: 100, shapes: [S4], maxShapes: 1 });
  pool.kick();
  await pool.idle();
  pool.take(S8);
  pool.kick();
  await pool.idle();
  await new Promise((r) => setTimeout(r, 10));
  t.deepEqual([...pool.depths().keys()], [shapeKey(S8)]);
  t.deepEqual(
    [...b.live.values()].map((s) => s.shape.memoryMiB),
    [8],
  );
});

test("release and close destroy shells; depth 0 builds nothing", async (t) => {
  const b = new FakeBuilder();
  const pool = new ShellPool(b, { depth: 3, maxMiB: 100, shapes: [S4, S8] });
  pool.kick();
  await pool.idle();
  t.true((await pool.release(8)) >= 8);
  await pool.close();
  t.is(b.live.size, 0);
  pool.kick();
  await pool.idle();
  t.is(b.live.size, 0);
  const off = new ShellPool(b, { depth: 0, maxMiB: 100, shapes: [S4] });
  off.kick();
  t.is(off.take(S4), undefined);
  await off.idle();
  t.is(b.live.size, 0);
});

test("parseShapes reads MEMORY[:VCPUS] and refuses the rest", (t) => {
  t.deepEqual(parseShapes("4, 64:2"), [S4, { memoryMiB: 64, maxMemoryMiB: 64, vcpus: 2, maxVcpus: 2 }]);
  t.deepEqual(parseShapes(""), []);
  t.throws(() => parseShapes("4m"), { message: /MEMORY_MIB/ });
  t.throws(() => parseShapes("0"), { message: /MEMORY_MIB/ });
});
