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
  ["env value with a tab", { [ANNOTATIONS.env]: '{"A":"b\\tc"}' }, /one word/],
  ["env value with a quote", { [ANNOTATIONS.env]: '{"A":"b\\"c"}' }, /quotes/],
  ["env value with a control character", { [ANNOTATIONS.env]: '{"A":"b\\u001bc"}' }, /control/],
  ["env name the shim sets", { [ANNOTATIONS.env]: '{"gw":"10.0.0.1"}' }, /env name gw is reserved/],
  [
    "an arg holding two words",
    { [ANNOTATIONS.args]: '["interval=1 gw=10.0.0.1"]' },
    /args\[0\] must be one word/,
  ],
  ["an arg with a newline", { [ANNOTATIONS.args]: '["a\\nb"]' }, /one word/],
  ["an arg with a no-break space", { [ANNOTATIONS.args]: '["a\\u00a0b"]' }, /one word/],
  ["an arg with a quote", { [ANNOTATIONS.args]: `["a'b"]` }, /quotes/],
  ["an empty arg", { [ANNOTATIONS.args]: '[""]' }, /args\[0\] is empty/],
  ["an arg that sets ip=", { [ANNOTATIONS.args]: '["ip=10.0.0.9/24"]' }, /must not set ip=/],
  ["an arg that sets hostname=", { [ANNOTATIONS.args]: '["x=1","hostname=evil"]' }, /args\[1\] must not set/],
  ["a vm uid that is not a uid", { [ANNOTATIONS.vm]: "a/b", [ANNOTATIONS.vmUid]: "x y" }, /must be a uid/],
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

test("words that only look like the shim's keys pass", (t) => {
  const c = parseSandboxAnnotations({
    [ANNOTATIONS.args]: JSON.stringify(["gwx=1", "-ip", "interval=1", "a=b=c"]),
    [ANNOTATIONS.env]: JSON.stringify({ IP: "1", EMPTY: "" }),
  });
  t.deepEqual(c.args, ["gwx=1", "-ip", "interval=1", "a=b=c"]);
  t.deepEqual(c.env, { IP: "1", EMPTY: "" });
});
