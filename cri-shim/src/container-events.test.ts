// GetContainerEvents over the real gRPC server and unix socket (the in-memory hypervisor TEST DOUBLE
// stands in for Xen): the events a kubelet's evented PLEG needs, in order, each with the pod's statuses
// as they are after the change, and a stream that ends when the shim closes.
import test from "ava";
import type { ClientReadableStream } from "@grpc/grpc-js";
import { runPodThroughCri, startUnitShim, type UnitShim } from "./testing/unit-shim.js";

interface Event {
  container_id: string;
  container_event_type: string;
  created_at: string;
  pod_sandbox_status: {
    id: string;
    state: string;
    metadata: { uid: string };
    network: { ip: string };
  } | null;
  containers_statuses: { id: string; state: string; exit_code: number; reason: string }[];
}

/** Collects a stream's messages; `until(n)` waits for the n-th. */
function collect(stream: ClientReadableStream<Event>) {
  const got: Event[] = [];
  let ended: string | undefined;
  stream.on("data", (e: Event) => got.push(e));
  stream.on("error", (err: Error & { code?: number }) => (ended = `error ${err.code}: ${err.message}`));
  stream.on("end", () => (ended ??= "end"));
  const wait = async (what: string, ok: () => boolean, ms = 5000) => {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end)
        throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(got.map(brief))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return {
    got,
    ended: () => ended,
    until: (n: number) => wait(`${n} events`, () => got.length >= n),
    untilEnded: () => wait("the stream's end", () => ended !== undefined),
  };
}

const brief = (e: Event) => [
  e.container_event_type.replace(/^CONTAINER_|_EVENT$/g, ""),
  e.container_id.slice(0, 6),
];

async function subscribed(shim: UnitShim) {
  const events = collect(shim.cri.runtimeStream<Event>("GetContainerEvents"));
  // The stream is open once the runtime counts its subscriber.
  const end = Date.now() + 5000;
  while (shim.runtime.events.subscriberCount === 0) {
    if (Date.now() > end) throw new Error("GetContainerEvents never subscribed");
    await new Promise((r) => setTimeout(r, 10));
  }
  return events;
}

test("a pod's life as events: started, created, started, stopped on exit, deleted; each with the pod's statuses after it", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const events = await subscribed(shim);

  const { sb, ctr } = await runPodThroughCri(shim, {
    name: "web",
    namespace: "ns",
    image: "r.test/hello:1",
    annotations: {},
  });
  await events.until(3);
  t.deepEqual(
    events.got.slice(0, 3).map((e) => [e.container_event_type, e.container_id]),
    [
      ["CONTAINER_STARTED_EVENT", sb],
      ["CONTAINER_CREATED_EVENT", ctr],
      ["CONTAINER_STARTED_EVENT", ctr],
    ],
  );
  const [sbStarted, created, started] = events.got;
  t.like(sbStarted!.pod_sandbox_status, { id: sb, state: "SANDBOX_READY", metadata: { uid: "uid-web" } });
  t.truthy(sbStarted!.pod_sandbox_status!.network.ip, "the sandbox's address is in its event");
  t.deepEqual(sbStarted!.containers_statuses, [], "no container yet when the sandbox is ready");
  t.deepEqual(
    created!.containers_statuses.map((c) => [c.id, c.state]),
    [[ctr, "CONTAINER_CREATED"]],
  );
  t.deepEqual(
    started!.containers_statuses.map((c) => [c.id, c.state]),
    [[ctr, "CONTAINER_RUNNING"]],
  );
  for (const e of events.got) t.regex(e.created_at, /^\d{19}$/, "created_at in nanoseconds");
  t.true(BigInt(created!.created_at) <= BigInt(started!.created_at), "in order");

  // The guest crashes: the exit monitor's change is an event with the exit in it.
  const [d] = await shim.hv.list();
  shim.hv.crash(d!.domid);
  await events.until(4);
  t.deepEqual(
    [events.got[3]!.container_event_type, events.got[3]!.container_id],
    ["CONTAINER_STOPPED_EVENT", ctr],
  );
  t.like(events.got[3]!.containers_statuses[0], {
    id: ctr,
    state: "CONTAINER_EXITED",
    exit_code: 139,
    reason: "Crashed",
  });

  await shim.cri.runtime("RemoveContainer", { container_id: ctr });
  await shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: sb });
  await shim.cri.runtime("RemovePodSandbox", { pod_sandbox_id: sb });
  await events.until(7);
  t.deepEqual(
    events.got.slice(4).map((e) => [e.container_event_type, e.container_id]),
    [
      ["CONTAINER_DELETED_EVENT", ctr],
      ["CONTAINER_STOPPED_EVENT", sb],
      ["CONTAINER_DELETED_EVENT", sb],
    ],
  );
  t.deepEqual(events.got[4]!.containers_statuses, [], "the removed container is not among the pod's");
  t.like(events.got[5]!.pod_sandbox_status, { id: sb, state: "SANDBOX_NOTREADY" });
  t.like(events.got[6]!.pod_sandbox_status, { id: sb }, "a removed sandbox's event carries its last status");
  await new Promise((r) => setTimeout(r, 200));
  t.is(events.got.length, 7, "nothing more");
});

test("every subscriber gets every event; a cancelled one stops counting; closing the shim ends the rest", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const first = await subscribed(shim);
  const secondStream = shim.cri.runtimeStream<Event>("GetContainerEvents");
  const second = collect(secondStream);
  while (shim.runtime.events.subscriberCount < 2) await new Promise((r) => setTimeout(r, 10));

  const { sb } = await runPodThroughCri(shim, {
    name: "a",
    namespace: "ns",
    image: "r.test/hello:1",
    annotations: {},
  });
  await first.until(3);
  await second.until(3);
  t.deepEqual(first.got.map(brief), second.got.map(brief));

  secondStream.cancel();
  const end = Date.now() + 5000;
  while (shim.runtime.events.subscriberCount !== 1 && Date.now() < end)
    await new Promise((r) => setTimeout(r, 10));
  t.is(shim.runtime.events.subscriberCount, 1, "the cancelled stream unsubscribed");
  await shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: sb });
  await first.until(5); // the container's end and the sandbox's
  t.is(second.got.length, 3);

  await shim.server.close(100);
  await first.untilEnded();
  t.is(first.ended(), "end", "the open stream ended cleanly when the shim closed");
  t.is(shim.runtime.events.subscriberCount, 0);
});

test("a restarted pod lists its new container first, in PodSandboxStatus and in events, as the kubelet's EventedPLEG reads them", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const events = await subscribed(shim);
  const { sb, ctr: first } = await runPodThroughCri(shim, {
    name: "web",
    namespace: "ns",
    image: "r.test/hello:1",
    annotations: {},
  });
  await events.until(3);
  // The guest crashes; the kubelet starts attempt 1 in the same sandbox.
  const [d] = await shim.hv.list();
  shim.hv.crash(d!.domid);
  await events.until(4);
  const { container_id: second } = await shim.cri.runtime<{ container_id: string }>("CreateContainer", {
    pod_sandbox_id: sb,
    config: {
      metadata: { name: "main", attempt: 1 },
      image: { image: "r.test/hello:1" },
      log_path: "main/1.log",
    },
    sandbox_config: { metadata: { name: "web", namespace: "ns", uid: "uid-web", attempt: 0 } },
  });
  await shim.cri.runtime("StartContainer", { container_id: second });
  await events.until(6);

  const status = await shim.cri.runtime<{
    containers_statuses: { id: string; state: string; metadata: { attempt: number } }[];
  }>("PodSandboxStatus", { pod_sandbox_id: sb, verbose: false });
  t.deepEqual(
    status.containers_statuses.map((c) => [c.id, c.state, c.metadata.attempt]),
    [
      [second, "CONTAINER_RUNNING", 1],
      [first, "CONTAINER_EXITED", 0],
    ],
    "newest first: the kubelet's relist finds the running attempt by name, not the exited one",
  );
  const started = events.got[5]!;
  t.deepEqual([started.container_event_type, started.container_id], ["CONTAINER_STARTED_EVENT", second]);
  t.deepEqual(
    started.containers_statuses.map((c) => [c.id, c.state]),
    [
      [second, "CONTAINER_RUNNING"],
      [first, "CONTAINER_EXITED"],
    ],
  );
});
