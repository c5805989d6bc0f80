import test from "ava";
import { checkMetadata } from "./validate.js";

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
