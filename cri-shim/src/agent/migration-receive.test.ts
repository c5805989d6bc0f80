// The received guest's network comes from the source spec's structured vif fields, never from its
// kernel command line (which carries the tenant's own words).
import test from "ava";
import type { DomainSpec } from "../hypervisor/types.js";
import { receivedGuestNetwork } from "./migration-receive.js";

const net = { mac: "00:16:3e:00:00:09", ip: "10.244.2.9" };
const base: Pick<DomainSpec, "vifs" | "cmdline"> = {
  // What a tenant's args could once smuggle onto the line: another address and gateway.
  cmdline: "interval=1 ip=6.6.6.7/24 gw=6.6.6.6 ip=10.244.1.5/24 gw=10.244.1.1",
  vifs: [],
};

test("the vif's address, MAC and gateway, whatever the command line says", (t) => {
  const got = receivedGuestNetwork(
    {
      ...base,
      vifs: [{ bridge: "xenbr0", mac: "00:16:3e:00:00:01", ip: "10.244.1.5", gateway: "10.244.1.1" }],
    },
    net,
  );
  t.deepEqual(got, { mac: "00:16:3e:00:00:01", ip: "10.244.1.5", gateway: "10.244.1.1" });
});

test("a source that sent no address or gateway: this pod's address and no gateway, not the command line's", (t) => {
  const got = receivedGuestNetwork({ ...base, vifs: [{ bridge: "xenbr0", mac: "00:16:3e:00:00:01" }] }, net);
  t.deepEqual(got, { mac: "00:16:3e:00:00:01", ip: "10.244.2.9" });
  t.deepEqual(receivedGuestNetwork(base, net), net);
});
