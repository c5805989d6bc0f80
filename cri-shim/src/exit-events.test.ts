// The exit monitor on events: with a hypervisor that reports domain exits (the lean backend's
// @releaseDomain watch), it lists the domains when an event comes and otherwise only at its rare
// safety interval, not twice a second; a crash is still noticed at once, and when the events stop it
// falls back to polling. Over the real gRPC server with the in-memory hypervisor TEST DOUBLE, given
// exit events here by a subclass.
import test from "ava";
import { MemoryHypervisorDouble } from "./testing/memory-hypervisor.js";
import { runPodThroughCri, startUnitShim } from "./testing/unit-shim.js";

const IMAGE = "registry.test/hello:1";

class EventedDouble extends MemoryHypervisorDouble {
  lists = 0;
  private listeners: { onEvent: () => void; onEnd: (why: string) => void }[] = [];
  override async list() {
    this.lists++;
    return super.list();
  }
  async watchDomainEvents(onEvent: () => void, onEnd: (why: string) => void) {
    const l = { onEvent, onEnd };
    this.listeners.push(l);
    return () => void (this.listeners = this.listeners.filter((x) => x !== l));
  }
  override crash(domid: number): void {
    super.crash(domid);
    for (const l of this.listeners) l.onEvent();
  }
  /** Test control: the watch breaks. */
  endEvents(): void {
    for (const l of this.listeners) l.onEnd("test: watch ended");
    this.listeners = [];
  }
}

async function waitUntil(what: string, probe: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("exits are noticed from events; idle, the domains are not listed at the poll interval", async (t) => {
  const hv = new EventedDouble();
  const shim = await startUnitShim({ hv });
  t.teardown(() => shim.dispose());
  const cri = shim.cri;
  const run = async (name: string) =>
    (await runPodThroughCri(shim, { name, namespace: "default", image: IMAGE, annotations: {} })).ctr;
  const state = async (ctr: string) =>
    (await cri.runtime<{ status: { state: string } }>("ContainerStatus", { container_id: ctr })).status.state;

  const ctrs = [await run("a"), await run("b"), await run("c")];
  const exited = async () =>
    (await Promise.all(ctrs.map(state))).filter((s) => s === "CONTAINER_EXITED").length;
  // The unit shim's poll interval is 50 ms: polling would list ~10 times in this half second.
  const before = hv.lists;
  await new Promise((r) => setTimeout(r, 500));
  t.true(hv.lists - before <= 1, `idle with events: ${hv.lists - before} lists in 500 ms`);

  const [d] = await hv.list();
  hv.crash(d!.domid);
  await waitUntil("the crash noticed from its event", async () => (await exited()) === 1, 2000);
  t.is((await hv.list()).length, 2, "the crashed domain is destroyed");

  // The watch breaks: back to polling, and exits are still noticed.
  hv.endEvents();
  const [e] = await hv.list();
  // A crash without an event (the double fires none once the watch ended).
  MemoryHypervisorDouble.prototype.crash.call(hv, e!.domid);
  await waitUntil("the crash noticed by polling", async () => (await exited()) === 2, 2000);
  const after = hv.lists;
  await new Promise((r) => setTimeout(r, 500));
  t.true(hv.lists - after >= 3, `polling resumed: ${hv.lists - after} lists in 500 ms`);
});
