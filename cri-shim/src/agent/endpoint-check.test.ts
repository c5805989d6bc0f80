import test from "ava";
import { endpointProblem, splitEndpoint } from "./endpoint-check.js";

const node = {
  status: {
    addresses: [
      { type: "InternalIP", address: "10.0.0.2" },
      { type: "ExternalIP", address: "2001:db8::2" },
      { type: "Hostname", address: "evil.example" },
    ],
  },
};

const cases: [string, string, string | undefined, typeof node | undefined, RegExp | undefined][] = [
  ["an InternalIP of the target", "10.0.0.2:4000", "xen-2", node, undefined],
  ["an ExternalIP (IPv6) of the target", "[2001:DB8::2]:4000", "xen-2", node, undefined],
  [
    "an address of some other host",
    "10.9.9.9:4000",
    "xen-2",
    node,
    /not an address of node xen-2 \(10\.0\.0\.2, 2001:db8::2\)/,
  ],
  ["the Node's Hostname (a name, not an address)", "evil.example:4000", "xen-2", node, /not an address/],
  ["no port", "10.0.0.2", "xen-2", node, /not host:port/],
  ["port out of range", "10.0.0.2:70000", "xen-2", node, /not host:port/],
  ["a URL", "https://10.0.0.2:4000", "xen-2", node, /not host:port/],
  ["no target node", "10.0.0.2:4000", undefined, node, /names no target node/],
  ["a target node that does not exist", "10.0.0.2:4000", "xen-9", undefined, /xen-9 does not exist/],
];
for (const [name, endpoint, target, n, want] of cases)
  test(`endpoint check: ${name}`, (t) => {
    const got = endpointProblem(endpoint, target, n);
    if (want) t.regex(got ?? "", want);
    else t.is(got, undefined);
  });

test("splitEndpoint reads host and port", (t) => {
  t.deepEqual(splitEndpoint("10.0.0.2:4000"), { host: "10.0.0.2", port: 4000 });
  t.deepEqual(splitEndpoint("[::1]:1"), { host: "::1", port: 1 });
  t.is(splitEndpoint(":80"), undefined);
});
