// `kubectl superfluid`: a kubectl plugin with thin wrappers over the UnikernelVM API.
// Every verb is one API call a user could make with kubectl patch/create; the plugin only spares
// the typing and explains errors.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import {
  API_VERSION,
  GROUP,
  MIGRATION_PLURAL,
  type RunPolicy,
  UNIKERNELVM_PLURAL,
  VERSION,
} from "../api/index.js";
import type { UnikernelVM } from "../api/v1alpha1/unikernelvm.js";
import type { UnikernelVMMigration } from "../api/v1alpha1/migration.js";

/** How long `migrate --wait` waits after Succeeded for the source to report its figures. */
const FIGURES_GRACE_MS = 20_000;

const USAGE = `Usage: kubectl superfluid <command> [flags]

Commands:
  pause <vm>                     keep the domain in memory, stop its vCPUs (runPolicy: Paused)
  resume <vm>                    run it again, from memory or from its checkpoint (runPolicy: Running)
  suspend <vm>                   save its state to disk and free its memory (runPolicy: Suspended)
  stop <vm>                      shut it down, keep the object (runPolicy: Stopped)
  migrate <vm> [--to NODE] [--cold] [--wait]
                                 move it to another node (creates a UnikernelVMMigration)
  console <vm>                   print its console (the pod's log)
  status [vm]                    phase, node, IP, domain and conditions

Flags: -n/--namespace NS, --kubeconfig FILE, --context NAME`;

export class UsageError extends Error {}

interface Parsed {
  command: string;
  positional: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(argv: string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const takesValue = new Set(["namespace", "kubeconfig", "context", "to"]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-n" || a.startsWith("--")) {
      const [rawName, inline] = a === "-n" ? ["namespace", undefined] : a.slice(2).split("=", 2);
      const name = rawName!;
      if (takesValue.has(name)) {
        const v = inline ?? argv[++i];
        if (v === undefined || v.startsWith("-")) throw new UsageError(`--${name} needs a value`);
        flags.set(name, v);
      } else if (["cold", "wait", "help", "follow"].includes(name)) flags.set(name, true);
      else throw new UsageError(`unknown flag ${a}`);
    } else if (a === "-h") flags.set("help", true);
    else if (a === "-f") flags.set("follow", true);
    else positional.push(a);
  }
  const [command = "help", ...rest] = positional;
  return { command, positional: rest, flags };
}

const RUN_POLICY_VERBS: Record<string, RunPolicy> = {
  pause: "Paused",
  resume: "Running",
  suspend: "Suspended",
  stop: "Stopped",
};

function errorText(e: unknown): string {
  const body = (e as { body?: unknown }).body;
  if (typeof body === "string") {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  return (e as Error).message ?? String(e);
}

export async function main(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const args = parseArgs(argv);
  if (args.command === "help" || args.flags.has("help")) {
    out(USAGE + "\n");
    return 0;
  }
  const kc = new KubeConfig();
  const kubeconfig = args.flags.get("kubeconfig");
  if (typeof kubeconfig === "string") kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const context = args.flags.get("context");
  if (typeof context === "string") kc.setCurrentContext(context);
  const ns = args.flags.get("namespace");
  const namespace =
    typeof ns === "string" ? ns : (kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default");
  const custom = kc.makeApiClient(CustomObjectsApi);
  const vmApi = { group: GROUP, version: VERSION, namespace, plural: UNIKERNELVM_PLURAL };
  const needVM = () => {
    const vm = args.positional[0];
    if (!vm) throw new UsageError(`${args.command} needs the name of a UnikernelVM`);
    return vm;
  };
  const getVM = async (name: string) =>
    (await custom.getNamespacedCustomObject({ ...vmApi, name })) as UnikernelVM;

  const policy = RUN_POLICY_VERBS[args.command];
  if (policy) {
    const name = needVM();
    await custom.patchNamespacedCustomObject(
      { ...vmApi, name, body: { spec: { runPolicy: policy } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    out(`unikernelvm/${name} runPolicy set to ${policy}\n`);
    return 0;
  }
  switch (args.command) {
    case "migrate": {
      const name = needVM();
      const vm = await getVM(name); // fail early, with the apiserver's message, if there is no such VM
      const to = args.flags.get("to");
      const migration: UnikernelVMMigration = {
        apiVersion: API_VERSION,
        kind: "UnikernelVMMigration",
        metadata: { generateName: `${name}-` } as UnikernelVMMigration["metadata"],
        spec: {
          vmName: name,
          mode: args.flags.has("cold") ? "cold" : "live",
          ...(typeof to === "string" ? { targetNode: to } : {}),
        },
      };
      const created = (await custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: MIGRATION_PLURAL,
        body: migration,
      })) as UnikernelVMMigration;
      const mName = created.metadata.name!;
      out(
        `unikernelvmmigration/${mName} created (${migration.spec.mode}, from ${vm.status?.nodeName ?? "?"} to ${typeof to === "string" ? to : "a node the operator picks"})\n`,
      );
      if (!args.flags.has("wait")) return 0;
      let shown: string | undefined;
      let figuresDeadline = Infinity;
      for (;;) {
        const m = (await custom
          .getNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: MIGRATION_PLURAL,
            name: mName,
          })
          .catch((e: unknown) => {
            if ((e as { code?: number }).code === 404) return undefined;
            throw e;
          })) as UnikernelVMMigration | undefined;
        // Deleted: the operator releases its finalizer as soon as a cancelled migration is Failed.
        if (!m) {
          out(
            `unikernelvmmigration/${mName} was deleted (last phase seen: ${shown ?? "none"}); deleted before the transfer it is Cancelled and the VM stays where it was\n`,
          );
          return 1;
        }
        const phase = m.status?.phase;
        // Each phase once, as the operator reports it (api/v1alpha1/migration.ts has the phases).
        if (phase && phase !== shown && phase !== "Succeeded" && phase !== "Failed") {
          out(`${phase}: ${m.status?.message ?? ""}\n`);
          shown = phase;
        }
        // The source's agent reports its figures (downtime, bytes) after the commit, so they may
        // trail Succeeded by a moment: wait for them a little before printing the summary.
        if (
          phase === "Succeeded" &&
          (m.status?.downtimeMilliseconds !== undefined || Date.now() > figuresDeadline)
        ) {
          const downtime = m.status?.downtimeMilliseconds;
          out(
            `migrated to ${m.status?.targetNode} in ${m.status?.totalMilliseconds ?? "?"} ms, ${
              downtime === undefined ? "downtime not reported by the source yet" : `downtime ${downtime} ms`
            }\n`,
          );
          return 0;
        }
        if (phase === "Succeeded" && figuresDeadline === Infinity)
          figuresDeadline = Date.now() + FIGURES_GRACE_MS;
        if (phase === "Failed") {
          const reason = m.status?.conditions?.find((c) => c.type === "Succeeded")?.reason;
          out(`migration failed${reason ? ` (${reason})` : ""}: ${m.status?.message ?? "no reason given"}\n`);
          return 1;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    case "console": {
      const vm = await getVM(needVM());
      const pod = vm.status?.podName;
      if (!pod)
        throw new Error(
          `unikernelvm/${vm.metadata.name} has no pod yet (phase ${vm.status?.phase ?? "Pending"})`,
        );
      const core = kc.makeApiClient(CoreV1Api);
      out(await core.readNamespacedPodLog({ name: pod, namespace }));
      return 0;
    }
    case "status": {
      const items = args.positional[0]
        ? [await getVM(args.positional[0])]
        : ((await custom.listNamespacedCustomObject(vmApi)) as { items: UnikernelVM[] }).items;
      out(formatStatus(items));
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(args.command)}`);
  }
}

export function formatStatus(items: UnikernelVM[]): string {
  const cond = (vm: UnikernelVM, type: string) =>
    vm.status?.conditions?.find((c) => c.type === type)?.status ?? "-";
  const rows = [
    ["NAME", "POLICY", "PHASE", "NODE", "IP", "DOMAIN", "READY", "PAUSED", "SUSPENDED", "MIGRATING"],
  ];
  for (const vm of items)
    rows.push([
      vm.metadata.name ?? "",
      vm.spec.runPolicy ?? "Running",
      vm.status?.phase ?? "Pending",
      vm.status?.nodeName ?? "-",
      vm.status?.ip ?? "-",
      vm.status?.domainId === undefined ? "-" : String(vm.status.domainId),
      cond(vm, "Ready"),
      cond(vm, "Paused"),
      cond(vm, "Suspended"),
      cond(vm, "Migrating"),
    ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join("   ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`error: ${e instanceof UsageError ? `${e.message}\n\n${USAGE}` : errorText(e)}\n`);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
