// Recovery after a crash races Xen: a domain the shim was destroying when it died can still be in
// the domain list while its teardown finishes, and gone a moment later. Seen in CI: the restarted
// shim listed it, destroy() answered "no such domain", and the shim exited instead of serving.
import test from "ava";
import { startUnitShim } from "../testing/unit-shim.js";

test("a restarted shim treats a listed domain that vanishes before destroy as already gone", async (t) => {
  let shim = await startUnitShim();
  t.teardown(() => shim.dispose());
  const dying = await shim.hv.strayDomain("sf-0123456789ab", 4);
  // The first listing after the restart still shows it; Xen completes its teardown right after.
  const hv = shim.hv;
  const list = hv.list.bind(hv);
  let raced = false;
  hv.list = async () => {
    const seen = await list();
    if (!raced && seen.some((d) => d.domid === dying)) {
      raced = true;
      await hv.destroy(dying);
    }
    return seen;
  };

  shim = await shim.restart();
  t.true(raced, "the recovery's listing saw the dying domain");
  t.deepEqual(shim.runtime.recovery!.destroyedOrphanDomains, ["sf-0123456789ab"]);
  t.deepEqual(await hv.list(), []);
  const version = await shim.cri.runtime<{ runtime_name: string }>("Version", {});
  t.is(version.runtime_name, "superfluid");
});
