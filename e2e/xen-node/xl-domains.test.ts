import test from "ava";
import { guestDomainsFromXl } from "./xl-domains.js";

// Output of `xl list -v` in an emulated dom0 with the lean backend's pool (two shells) and one guest.
const LISTED = `Name                                        ID   Mem VCPUs	State	Time(s)   UUID                            Reason-Code	Security Label
Domain-0                                     0  1024     4     r-----     253.1 00000000-0000-0000-0000-000000000000        -                -
(null)                                       1    64     0     --p---       0.0 73662d73-6865-6c6c-9a1b-2c3d4e5f6071        -                -
(null)                                       2     4     0     --p---       0.0 73662d73-6865-6c6c-0a1b-2c3d4e5f6072        -                -
sf-91ce291b91ab                              3     4     1     -b----       1.2 2e3af83b-9177-4cd5-865a-bfa65cd74e4a        -                -
`;

test("xl list -v: Domain-0 and the pool's shells are not guests", (t) => {
  t.deepEqual(guestDomainsFromXl(LISTED), [
    { name: "sf-91ce291b91ab", id: 3, uuid: "2e3af83b-9177-4cd5-865a-bfa65cd74e4a" },
  ]);
});

test("xl list -v: nothing but the header and Domain-0 is no guest", (t) => {
  t.deepEqual(guestDomainsFromXl(LISTED.split("\n").slice(0, 2).join("\n")), []);
});
