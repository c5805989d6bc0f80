// libxl_dominfo flags -> DomainState, uuid formatting, domid guards: table tests.
import test from "ava";
import { checkDomid, checkGuestDomid, errorCodeFor, formatUuid, stateOf } from "./domain-state.js";
import type { Dominfo } from "./libxl-structs.js";
import { HypervisorError } from "./types.js";

const idle: Dominfo = {
  uuid: new Array<number>(16).fill(0),
  domid: 3,
  running: false,
  blocked: false,
  paused: false,
  shutdown: false,
  dying: false,
  shutdown_reason: -1,
  current_memkb: 0,
  max_memkb: 0,
  cpu_time: 0,
  vcpu_online: 1,
  vcpu_max_id: 0,
  domain_type: 2,
};

const cases: [string, Partial<Dominfo>, ReturnType<typeof stateOf>][] = [
  ["running", { running: true }, { state: "running" }],
  ["runnable (neither running nor blocked) counts as running", {}, { state: "running" }],
  ["blocked", { blocked: true }, { state: "blocked" }],
  ["paused wins over blocked", { paused: true, blocked: true }, { state: "paused" }],
  ["poweroff", { shutdown: true, shutdown_reason: 0 }, { state: "shutdown", shutdownReason: "poweroff" }],
  ["reboot", { shutdown: true, shutdown_reason: 1 }, { state: "shutdown", shutdownReason: "reboot" }],
  [
    "suspend (after save)",
    { shutdown: true, shutdown_reason: 2, paused: true },
    { state: "shutdown", shutdownReason: "suspend" },
  ],
  ["crash", { shutdown: true, shutdown_reason: 3 }, { state: "crashed", shutdownReason: "crash" }],
  ["watchdog", { shutdown: true, shutdown_reason: 4 }, { state: "shutdown", shutdownReason: "watchdog" }],
  ["unknown reason", { shutdown: true, shutdown_reason: -1 }, { state: "shutdown" }],
  ["dying wins over all", { dying: true, shutdown: true, shutdown_reason: 3 }, { state: "dying" }],
];
for (const [title, flags, expected] of cases) {
  test(`state: ${title}`, (t) => t.deepEqual(stateOf({ ...idle, ...flags }), expected));
}

test("uuid is formatted 8-4-4-4-12", (t) => {
  t.is(formatUuid([...Array(16).keys()].map((i) => i * 17)), "00112233-4455-6677-8899-aabbccddeeff");
});

for (const bad of [-1, 1.5, Number.NaN, 0x7ff0, 65535]) {
  test(`checkDomid rejects ${bad}`, (t) => {
    t.is(t.throws(() => checkDomid(bad), { instanceOf: HypervisorError })?.code, "InvalidArgument");
  });
}

test("guest operations refuse domain 0; ordinary domids pass", (t) => {
  t.regex(t.throws(() => checkGuestDomid(0, "destroy"))?.message ?? "", /refusing to destroy domain 0/);
  t.notThrows(() => checkGuestDomid(1, "destroy"));
  t.notThrows(() => checkDomid(0));
});

for (const [rc, code] of [
  [-21, "NotFound"],
  [-23, "NotFound"],
  [-5, "OutOfMemory"],
  [-6, "InvalidArgument"],
  [-3, "Failed"],
  [-1, "Failed"],
] as const) {
  test(`libxl rc ${rc} -> ${code}`, (t) => t.is(errorCodeFor(rc), code));
}
