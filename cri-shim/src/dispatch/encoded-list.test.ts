// List responses encoded per entry and remembered: the bytes decode to the same message as encoding
// the whole list at once (with the real CRI proto), each entry is encoded once while it lives, and a
// changed entry (the stores replace frozen entries) is encoded again. Then over the real gRPC server:
// the kubelet's ListPodSandbox/ListContainers see a state change at once.
import test from "ava";
import { loadCriServices } from "../proto.js";
import { runPodThroughCri, startUnitShim } from "../testing/unit-shim.js";
import { EncodedList, wrapDefinition } from "./wire.js";

const runtime = loadCriServices().runtime;
const listDef = runtime.ListPodSandbox!;

const sandbox = (i: number, state = "SANDBOX_READY") =>
  Object.freeze({
    id: `${i}`.padStart(64, "a"),
    metadata: { name: `p${i}`, uid: `u${i}`, namespace: "ns", attempt: 0 },
    state,
    created_at: String(1_700_000_000_000_000_000n + BigInt(i)),
    labels: { app: `p${i}` },
    annotations: { "superfluid.dev/memory-mib": "4" },
    runtime_handler: "superfluid",
  });

test("concatenated one-entry encodings decode as the whole list; each entry encoded once while it lives", (t) => {
  let entries = Array.from({ length: 300 }, (_, i) => sandbox(i));
  let encodes = 0;
  const serialize = (v: unknown) => (encodes++, listDef.responseSerialize(v));
  const view = (e: ReturnType<typeof sandbox>) => e;
  const first = new EncodedList("items", entries, view).encode(serialize);
  t.deepEqual(
    listDef.responseDeserialize(first),
    listDef.responseDeserialize(listDef.responseSerialize({ items: entries })),
  );
  t.is(encodes, 300);
  new EncodedList("items", entries, view).encode(serialize);
  t.is(encodes, 300, "a second list encodes nothing");
  entries = entries.map((e, i) => (i === 7 ? sandbox(7, "SANDBOX_NOTREADY") : e));
  const third = new EncodedList("items", entries, view).encode(serialize);
  t.is(encodes, 301, "only the changed entry is encoded again");
  const items = (listDef.responseDeserialize(third) as { items: { state: string }[] }).items;
  t.is(items[7]!.state, "SANDBOX_NOTREADY");
  t.is(items.length, 300);
  // Through the wrapped definition the server uses.
  t.deepEqual(
    wrapDefinition(runtime).ListPodSandbox!.responseSerialize(new EncodedList("items", entries, view)),
    third,
  );
});

test("over gRPC: ListPodSandbox and ListContainers show a stop at once, filters still apply", async (t) => {
  const shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const ids: { sb: string; ctr: string }[] = [];
  for (let i = 0; i < 3; i++)
    ids.push(
      await runPodThroughCri(shim, {
        name: `p${i}`,
        namespace: "default",
        image: "registry.test/hello:1",
        annotations: {},
        labels: { n: String(i) },
      }),
    );
  type Sb = { items: { id: string; state: string }[] };
  type Ct = { containers: { id: string; state: string }[] };
  const all = await shim.cri.runtime<Sb>("ListPodSandbox", { filter: null });
  t.deepEqual(
    all.items.map((s) => s.state),
    ["SANDBOX_READY", "SANDBOX_READY", "SANDBOX_READY"],
  );
  await shim.cri.runtime("StopPodSandbox", { pod_sandbox_id: ids[1]!.sb });
  const after = await shim.cri.runtime<Sb>("ListPodSandbox", { filter: null });
  t.is(after.items.find((s) => s.id === ids[1]!.sb)?.state, "SANDBOX_NOTREADY");
  const ctrs = await shim.cri.runtime<Ct>("ListContainers", { filter: null });
  t.is(ctrs.containers.find((c) => c.id === ids[1]!.ctr)?.state, "CONTAINER_EXITED");
  t.is(ctrs.containers.find((c) => c.id === ids[0]!.ctr)?.state, "CONTAINER_RUNNING");
  const one = await shim.cri.runtime<Sb>("ListPodSandbox", { filter: { label_selector: { n: "2" } } });
  t.deepEqual(
    one.items.map((s) => s.id),
    [ids[2]!.sb],
  );
});
