import test from "ava";
import { quietKubeletLog } from "./diagnostics.js";

const EVICTION =
  'E1206 18:20:31.240380     273 eviction_manager.go:217] "Eviction manager: failed to synchronize" err="eviction manager: failed to get HasDedicatedImageFs"';
const HAS_DEDICATED =
  'E1206 18:20:31.237907     273 eviction_manager.go:264] "Eviction manager: failed to get HasDedicatedImageFs" err="get filesystem info"';
const STATS =
  'E1206 18:20:31.235372     273 cri_stats_provider.go:580] "Failed to get the info of the filesystem with mountpoint" err="cannot find filesystem info for device \\"/var/lib/superfluid\\""';
const BACKOFF =
  'E1206 18:21:24.678673     273 pod_workers.go:1338] "Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"unikernel\\" with CrashLoopBackOff"';
const REMOVE = 'I1206 18:21:24.657633     273 scope.go:122] "RemoveContainer" containerID="6d036f"';

test("the kubelet's periodic filesystem-info failures are left out, and counted", (t) => {
  const log = [STATS, HAS_DEDICATED, EVICTION, REMOVE, STATS, BACKOFF, EVICTION].join("\n");
  t.is(quietKubeletLog(log), ["(5 periodic filesystem-info lines left out)", REMOVE, BACKOFF].join("\n"));
});

test("a log without them is as it was", (t) => {
  const log = [REMOVE, BACKOFF].join("\n");
  t.is(quietKubeletLog(log), log);
});

test("an eviction manager line about anything else stays", (t) => {
  const other =
    'I1206 18:20:31.240380     273 eviction_manager.go:366] "Eviction manager: attempting to reclaim" resourceName="memory"';
  t.is(quietKubeletLog(other), other);
});
