// Which record change is which CRI event (pure, table-tested), and the runtime's event source over two
// real stores in a temp directory: events in commit order, none for what the CRI never saw.
import test, { type ExecutionContext } from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../store/store.js";
import { containerRecord } from "../testing/records.js";
import {
  containerEventType,
  LifecycleEvents,
  sandboxEventType,
  type LifecycleEvent,
} from "./lifecycle-events.js";
import type { ContainerMeta, ContainerStatusRecord, SandboxMeta, SandboxStatus } from "./model.js";

type SbState = SandboxStatus["state"];
type CState = ContainerStatusRecord["state"];
const sb = (state: SbState): SandboxStatus => ({ state });
const ct = (state: CState): ContainerStatusRecord => containerRecord({ state });

test("sandbox changes as events", (t) => {
  const table: [SbState | undefined, SbState | undefined, string | undefined][] = [
    [undefined, "creating", undefined],
    ["creating", "ready", "CONTAINER_STARTED_EVENT"],
    [undefined, "ready", "CONTAINER_STARTED_EVENT"],
    ["ready", "ready", undefined], // e.g. its network record rewritten
    ["ready", "notready", "CONTAINER_STOPPED_EVENT"],
    ["notready", "notready", undefined], // a second StopPodSandbox
    ["creating", "notready", undefined], // never reported ready
    ["notready", undefined, "CONTAINER_DELETED_EVENT"],
    ["ready", undefined, "CONTAINER_DELETED_EVENT"],
    ["creating", undefined, undefined], // recovery removing a half-made one
    [undefined, undefined, undefined],
  ];
  for (const [before, after, want] of table)
    t.is(
      sandboxEventType(before && sb(before), after && sb(after)),
      want as never,
      `${before ?? "none"} -> ${after ?? "gone"}`,
    );
});

test("container changes as events", (t) => {
  const table: [CState | undefined, CState | undefined, string | undefined][] = [
    [undefined, "creating", undefined],
    ["creating", "created", "CONTAINER_CREATED_EVENT"],
    [undefined, "created", "CONTAINER_CREATED_EVENT"],
    ["created", "running", "CONTAINER_STARTED_EVENT"],
    ["running", "running", undefined], // suspended to disk, restored: still running for the CRI
    ["running", "exited", "CONTAINER_STOPPED_EVENT"],
    ["created", "exited", "CONTAINER_STOPPED_EVENT"], // stopped before it ran
    ["exited", "exited", undefined],
    ["exited", undefined, "CONTAINER_DELETED_EVENT"],
    ["created", undefined, "CONTAINER_DELETED_EVENT"],
    ["creating", undefined, undefined], // a build that failed, cleaned
  ];
  for (const [before, after, want] of table)
    t.is(
      containerEventType(before && ct(before), after && ct(after)),
      want as never,
      `${before ?? "none"} -> ${after ?? "gone"}`,
    );
});

const ID = (c: string) => c.repeat(64);

/** Two real stores in a temp directory the test removes. */
async function stores(t: ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), "sf-events-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sandboxes = new Store<SandboxMeta, SandboxStatus>(join(dir, "sb"), "pod sandbox");
  const containers = new Store<ContainerMeta, ContainerStatusRecord>(join(dir, "c"), "container");
  await sandboxes.load();
  await containers.load();
  return { sandboxes, containers };
}

test("the event source over real stores: commit order, the sandbox's record on its events, unsubscribe", async (t) => {
  const { sandboxes, containers } = await stores(t);
  const source = new LifecycleEvents({ sandboxes, containers });
  const got: LifecycleEvent[] = [];
  const stop = source.subscribe((e) => got.push(e));
  t.is(source.subscriberCount, 1);

  const sbMeta = { id: ID("a") } as SandboxMeta;
  await sandboxes.create(sbMeta, sb("creating"));
  await sandboxes.update(ID("a"), () => sb("ready"));
  await containers.create({ id: ID("b"), sandboxId: ID("a") } as ContainerMeta, ct("creating"));
  await containers.update(ID("b"), () => ct("created"));
  await containers.update(ID("b"), () => ct("running"));
  await containers.update(ID("b"), (s) => ({ ...s, domid: 7 })); // no event
  await containers.update(ID("b"), () => ct("exited"));
  await containers.delete(ID("b"));
  await sandboxes.update(ID("a"), () => sb("notready"));
  await sandboxes.delete(ID("a"));
  // A second sandbox that never got past "creating", removed (recovery): nothing.
  await sandboxes.create({ id: ID("c") } as SandboxMeta, sb("creating"));
  await sandboxes.delete(ID("c"));

  t.deepEqual(
    got.map((e) => [e.type, e.id === ID("a") ? "sandbox" : "container", e.sandboxId === ID("a")]),
    [
      ["CONTAINER_STARTED_EVENT", "sandbox", true],
      ["CONTAINER_CREATED_EVENT", "container", true],
      ["CONTAINER_STARTED_EVENT", "container", true],
      ["CONTAINER_STOPPED_EVENT", "container", true],
      ["CONTAINER_DELETED_EVENT", "container", true],
      ["CONTAINER_STOPPED_EVENT", "sandbox", true],
      ["CONTAINER_DELETED_EVENT", "sandbox", true],
    ],
  );
  t.is(got[0]!.sandbox?.status.state, "ready");
  t.is(got[6]!.sandbox?.status.state, "notready", "a removed sandbox's event carries its last record");
  t.is(got[1]!.sandbox, undefined, "a container's event names its sandbox by id only");

  stop();
  t.is(source.subscriberCount, 0);
  await sandboxes.create({ id: ID("d") } as SandboxMeta, sb("ready"));
  t.is(got.length, 7, "no events after unsubscribing");
});

test("a subscriber that throws does not stop the change nor the other subscribers", async (t) => {
  const { sandboxes, containers } = await stores(t);
  const source = new LifecycleEvents({ sandboxes, containers });
  const got: string[] = [];
  source.subscribe(() => {
    throw new Error("a broken stream");
  });
  source.subscribe((e) => got.push(e.type));
  await sandboxes.create({ id: ID("e") } as SandboxMeta, sb("ready"));
  t.is(sandboxes.get(ID("e"))?.status.state, "ready");
  t.deepEqual(got, ["CONTAINER_STARTED_EVENT"]);
});
