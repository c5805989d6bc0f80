import test from "ava";
import { ANNOTATIONS, AnnotationError, parseSandboxAnnotations } from "./annotations.js";

test("a full set of annotations parses into a typed config", (t) => {
  const c = parseSandboxAnnotations({
    [ANNOTATIONS.vm]: "default/hello",
    [ANNOTATIONS.args]: JSON.stringify(["-v", "interval=1"]),
    [ANNOTATIONS.env]: JSON.stringify({ GREETING: "hi" }),
    [ANNOTATIONS.memoryMiB]: "8",
    [ANNOTATIONS.vcpus]: "2",
    [ANNOTATIONS.guestType]: "pv",
    [ANNOTATIONS.runPolicy]: "Paused",
    "unrelated.io/key": "x",
  });
  t.deepEqual(c, {
    vm: { namespace: "default", name: "hello" },
    args: ["-v", "interval=1"],
    env: { GREETING: "hi" },
    memoryMiB: 8,
    vcpus: 2,
    guestType: "pv",
    runPolicy: "Paused",
  });
});

test("no annotations give the defaults", (t) => {
  t.deepEqual(parseSandboxAnnotations(undefined), { args: [], env: {}, runPolicy: "Running" });
});

const bad: [string, Record<string, string>, RegExp][] = [
  ["vm without namespace", { [ANNOTATIONS.vm]: "hello" }, /<namespace>\/<name>/],
  ["args not JSON", { [ANNOTATIONS.args]: "[oops" }, /not valid JSON/],
  ["args not strings", { [ANNOTATIONS.args]: "[1,2]" }, /array of strings/],
  ["env as array", { [ANNOTATIONS.env]: "[]" }, /JSON object/],
  ["env bad name", { [ANNOTATIONS.env]: '{"1 x":"y"}' }, /invalid variable name/],
  ["env value with space", { [ANNOTATIONS.env]: '{"A":"b c"}' }, /white space/],
  ["memory negative", { [ANNOTATIONS.memoryMiB]: "-4" }, /positive integer/],
  ["memory zero", { [ANNOTATIONS.memoryMiB]: "0" }, /between 1 and/],
  ["vcpus too many", { [ANNOTATIONS.vcpus]: "65" }, /between 1 and 64/],
  ["guest type unknown", { [ANNOTATIONS.guestType]: "hvm" }, /one of pv, pvh/],
  ["run policy unknown", { [ANNOTATIONS.runPolicy]: "Sleeping" }, /one of Running/],
  ["command line too long", { [ANNOTATIONS.args]: JSON.stringify(["x".repeat(2000)]) }, /Xen allows 1024/],
];
for (const [name, annotations, message] of bad) {
  test(`rejects ${name}`, (t) => {
    const err = t.throws(() => parseSandboxAnnotations(annotations), { instanceOf: AnnotationError });
    t.regex(err.message, message);
  });
}
