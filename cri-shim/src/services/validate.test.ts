import test from "ava";
import { checkMetadata, sandboxRunsVM } from "./validate.js";

test("annotation values may be long multi-line documents, as kubectl apply writes them", (t) => {
  const lastApplied =
    JSON.stringify({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "x" },
      spec: { containers: [] },
      pad: "x".repeat(4000),
    }) + "\n";
  t.notThrows(() =>
    checkMetadata({ app: "x" }, { "kubectl.kubernetes.io/last-applied-configuration": lastApplied }),
  );
});

test("a NUL in an annotation, a long label value or oversized annotations are refused clearly", (t) => {
  t.throws(() => checkMetadata({}, { a: "b\0c" }), { message: /value of annotation a contains a NUL byte/ });
  t.throws(() => checkMetadata({ app: "x".repeat(300) }, {}), {
    message: /value of label app is 300 characters/,
  });
  t.throws(() => checkMetadata({}, { big: "x".repeat(300 * 1024) }), {
    message: /annotations are \d+ bytes, at most 262144/,
  });
  t.throws(() => checkMetadata({}, { "bad\nkey": "v" }), {
    message: /annotation key contains control characters/,
  });
});

test("a sandbox runs a VM only with the pod's own namespace, the VM's name and its uid", (t) => {
  const vm = { metadata: { namespace: "team-a", name: "web", uid: "u-1" } };
  const claim = { namespace: "team-a", name: "web", uid: "u-1" };
  t.true(sandboxRunsVM({ metadata: { namespace: "team-a" }, config: { vm: claim } }, vm));
  // A pod in another namespace that copies the annotations claims nothing.
  t.false(sandboxRunsVM({ metadata: { namespace: "team-b" }, config: { vm: claim } }, vm));
  // The leftover pod of a deleted VM of the same name.
  t.false(sandboxRunsVM({ metadata: { namespace: "team-a" }, config: { vm: { ...claim, uid: "u-0" } } }, vm));
  // No uid: the annotation alone binds nothing.
  t.false(
    sandboxRunsVM(
      { metadata: { namespace: "team-a" }, config: { vm: { namespace: "team-a", name: "web" } } },
      vm,
    ),
  );
  t.false(sandboxRunsVM({ metadata: { namespace: "team-a" }, config: {} }, vm));
  t.false(sandboxRunsVM({ metadata: { namespace: "team-a" }, config: { vm: { ...claim, name: "db" } } }, vm));
});
