// The kubelet's Go environment in dom0 (kubelet.ts kubeletGoEnv), run by a real shell: a P per CPU
// the shell's machine has, never fewer than one, and GOGC as asked.
import test from "ava";
import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { kubeletGoEnv } from "./kubelet.js";

const run = (env: string) =>
  execFileSync("sh", ["-c", `${env} sh -c 'echo "$GOMAXPROCS $GOGC"'`], { encoding: "utf8" }).trim();

test("the kubelet gets a Go P per CPU of the machine it runs on, with dom0's GOGC", (t) => {
  const nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim());
  t.true(nproc >= 1 && nproc <= availableParallelism() * 4, `nproc ${nproc}`);
  t.is(run(kubeletGoEnv()), `${nproc} 400`);
  t.is(run(kubeletGoEnv(100)), `${nproc} 100`);
});

test("one P when the machine shows one CPU", (t) => {
  // taskset to one CPU: nproc counts the CPUs the process may run on, as a one-vCPU dom0 shows one.
  const out = execFileSync(
    "taskset",
    ["-c", "0", "sh", "-c", `${kubeletGoEnv()} sh -c 'echo "$GOMAXPROCS"'`],
    {
      encoding: "utf8",
    },
  ).trim();
  t.is(out, "1");
});
