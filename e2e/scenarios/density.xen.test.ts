// Many VMs on one node, through Kubernetes: DENSITY_TEST_VMS (default 50) hello UnikernelVMs created
// at once through the apiserver, scheduled by the real scheduler onto one emulated Xen node (lean
// backend), run by the real kubelet. All must become Ready with a domain each and an address each;
// then all are deleted and dom0 must hold nothing of them: no domain, vif, address lease, sandbox or
// container record, pod log dir, console log, XenStore backend or record, and the shim no more
// file descriptors than before.
import test from "ava";
import { exampleImageRef } from "../cluster/images.js";
import { startFleet } from "../cluster/fleet.js";
import type { XenNode } from "../xen-node/index.js";
import { SHELL_UUID_PREFIX } from "../../cri-shim/src/hypervisor/xen-lean/sfxen-names.js";
import { eventually, logTiming, useE2ECluster } from "./helpers.js";

// The lean backend, its shell pool of the guests' shape (env set before the cluster starts).
process.env.SUPERFLUID_HYPERVISOR ??= "lean";
process.env.SUPERFLUID_POOL_SHAPES ??= "4";

const VMS = Number(process.env.DENSITY_TEST_VMS ?? 50);
const scenario = useE2ECluster(test, "dens");
const TEST_TIMEOUT_MS = 30 * 60_000;

/**
 * What dom0 holds per VM, as sorted names per kind, in one exec (each process dom0 starts costs
 * seconds under emulation). Pool shells (their UUID prefix; unnamed until claimed) are the lean
 * backend's spares, not any VM's.
 */
const SNAPSHOT = String.raw`
shim=$(cat /mnt/host/shim/shim.pid)
names() { tr '\n' ' '; echo; }
printf 'domains '; xl list -v | awk 'NR>1 && $1!="Domain-0" && $7 !~ /^${SHELL_UUID_PREFIX}/ {print $1}' | sort | names
shells=" $(for d in $(xenstore-list /local/domain); do n=$(xenstore-read /local/domain/$d/name 2>/dev/null); case "$n" in sf-shell-*) printf '%s ' $d;; esac; done)"
printf 'xenstore-domains '; for d in $(xenstore-list /local/domain); do case "$shells" in *" $d "*) ;; *) [ "$d" = 0 ] || echo $d;; esac; done | sort | names
printf 'vif-backends '; for d in $(xenstore-list /local/domain/0/backend/vif 2>/dev/null); do case "$shells" in *" $d "*) ;; *) echo $d;; esac; done | sort | names
printf 'vifs '; ls /sys/class/net | grep '^vif' | sort | names
printf 'leases '; find /var/lib/superfluid/cni -type f ! -name 'last_reserved_ip*' ! -name lock -printf '%f\n' 2>/dev/null | sort | names
printf 'records '; find /var/lib/superfluid/state -type f -printf '%P\n' 2>/dev/null | sort | names
printf 'pod-logs '; ls /var/log/pods 2>/dev/null | sort | names
printf 'consoles '; ls /var/log/xen/console 2>/dev/null | grep '^guest-' | grep -v '^guest-sf-shell-' | sort | names
printf 'checkpoints '; ls /var/lib/superfluid/checkpoints 2>/dev/null | sort | names
printf 'shim-fds '; ls /proc/$shim/fd | wc -l
printf 'shim-fd-kinds '; ls -l /proc/$shim/fd | awk 'NR>1 {print $NF}' | sed -e 's/:\[[0-9]*\]$//' -e 's/^\/.*/file/' | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}'; echo
`;

type Snapshot = Record<string, string[]>;

async function snapshot(xen: XenNode): Promise<Snapshot> {
  const r = await xen.exec(SNAPSHOT, { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`dom0 snapshot failed (${r.code}): ${r.stderr}`);
  const out: Snapshot = {};
  for (const line of r.stdout.split("\n")) {
    const [key, ...rest] = line.trim().split(/\s+/);
    if (key) out[key] = rest;
  }
  return out;
}

/** What `after` holds that `before` did not, per kind (shim-fds: the growth, beyond a little slack). */
function leaks(before: Snapshot, after: Snapshot): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [key, names] of Object.entries(after)) {
    if (key === "shim-fd-kinds") continue;
    if (key === "shim-fds") {
      // Pooled API and gRPC connections come and go (50 VMs left +11, sockets); a leak per VM
      // would show as at least one per VM.
      const grown = Number(names[0]) - Number(before[key]?.[0] ?? 0);
      if (grown >= VMS / 2) out[key] = [`+${grown}`, ...(after["shim-fd-kinds"] ?? [])];
      continue;
    }
    const extra = names.filter((n) => !(before[key] ?? []).includes(n));
    if (extra.length) out[key] = extra;
  }
  return out;
}

test(`${VMS} VMs on one node through UnikernelVMs: all Ready, and after deletion nothing is left in dom0`, async (t) => {
  const s = await scenario(t, TEST_TIMEOUT_MS);
  const node = s.cluster.nodes[0]!;
  const before = await snapshot(node.xen);
  t.log(`dom0 before: ${JSON.stringify(before)}`);
  t.deepEqual(before.domains, [], "no VM domain before the test");

  const fleet = await startFleet(s.cluster.cp, {
    namespace: s.namespace,
    image: exampleImageRef("hello"),
    intervalSeconds: 3600,
    // The operator on the host cannot read localhost:5000 (dom0's forward to the registry).
    memory: "4Mi",
  });
  t.teardown(() => fleet.close());
  const names = Array.from({ length: VMS }, (_, i) => `d-${i}`);
  const t0 = Date.now();
  await fleet.create(names);
  await fleet.waitReady(names, 20 * 60_000);
  logTiming(t, `${VMS} VMs Ready`, Date.now() - t0);
  const ms = names.map((n) => fleet.readyMs(n)!).sort((a, b) => a - b);
  t.log(`apply→Ready ms: min ${ms[0]}, median ${ms[ms.length >> 1]}, max ${ms.at(-1)}`);

  // One domain per VM (pool shells aside), each with its own address from the node's pod subnet.
  const during = await snapshot(node.xen);
  t.is(during.domains?.length, VMS, "one domain per VM");
  const pods = JSON.parse(await s.ok(["get", "pods", "-o", "json"])) as {
    items: Array<{ status?: { podIP?: string; phase?: string } }>;
  };
  const ips = pods.items.map((p) => p.status?.podIP).filter((ip): ip is string => !!ip);
  t.is(new Set(ips).size, VMS, "one address per VM");
  t.is(during.vifs?.length, VMS, "one vif per VM");
  t.is(during.leases?.length, VMS, "one lease per VM");

  const d0 = Date.now();
  await fleet.deleteAll(15 * 60_000);
  logTiming(t, `${VMS} VMs deleted (finalizers done)`, Date.now() - d0);
  // The kubelet removes a deleted pod's sandbox after it reports it gone: wait for dom0 to be clean.
  const left = await eventually(
    "dom0 to hold nothing of the deleted VMs",
    async () => {
      const l = leaks(before, await snapshot(node.xen));
      return Object.keys(l).length === 0 ? l : undefined;
    },
    5 * 60_000,
    10_000,
  ).catch(async (err: Error) => {
    const l = leaks(before, await snapshot(node.xen));
    t.log(`left in dom0: ${JSON.stringify(l)}`);
    throw err;
  });
  t.deepEqual(left, {});
  t.log(`dom0 after: ${JSON.stringify(await snapshot(node.xen))}`);
  logTiming(t, `${VMS} VMs created, Ready, deleted and cleaned up`, Date.now() - t0);
});
