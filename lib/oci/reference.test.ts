// Pure unit tests: reference normalisation (must match what the kubelet and containerd call an
// image) and WWW-Authenticate parsing.
import test from "ava";
import { formatReference, parseReference } from "./reference.js";
import { parseChallenge } from "./registry-client.js";
import { OciError } from "./types.js";

const D = `sha256:${"a".repeat(64)}`;
const good: Array<[string, string]> = [
  ["hello", "docker.io/library/hello:latest"],
  ["user/app:1.0", "docker.io/user/app:1.0"],
  ["localhost:5000/superfluid/hello:latest", "localhost:5000/superfluid/hello:latest"],
  ["127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest"],
  ["registry.example/x/y:v1", "registry.example/x/y:v1"],
  [`127.0.0.1:5000/app@${D}`, `127.0.0.1:5000/app@${D}`],
  [`127.0.0.1:5000/app:v2@${D}`, `127.0.0.1:5000/app:v2@${D}`],
  ["localhost/app", "localhost/app:latest"],
];
for (const [raw, canonical] of good)
  test(`reference ${raw} -> ${canonical}`, (t) => {
    t.is(formatReference(parseReference(raw)), canonical);
  });

const bad = [
  "",
  "UPPER/case",
  "app:",
  "app@sha256:short",
  "a//b",
  "127.0.0.1:5000/",
  "app:tag with space",
  "-lead/x",
];
for (const raw of bad)
  test(`reference ${JSON.stringify(raw)} is refused`, (t) => {
    const err = t.throws(() => parseReference(raw), { instanceOf: OciError });
    t.is(err?.code, "InvalidReference");
    t.true(err?.message.startsWith("image reference "));
  });

test("WWW-Authenticate challenges parse, quoted commas included", (t) => {
  t.deepEqual(
    parseChallenge(
      'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"',
    ),
    {
      scheme: "bearer",
      params: { realm: "https://auth.example/token", service: "reg", scope: "repository:a/b:pull,push" },
    },
  );
  t.deepEqual(parseChallenge('Basic realm="superfluid-test"'), {
    scheme: "basic",
    params: { realm: "superfluid-test" },
  });
  t.is(parseChallenge("").scheme, "");
});
