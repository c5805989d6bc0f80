// Calls that assume a process model inside the container. A unikernel is one address space with no
// shell, no exec and no stdin: these are refused with a reason rather than faked.
import { CriError } from "../errors.js";
import type { Handler } from "./types.js";

const refuse =
  (call: string, why: string): Handler =>
  async () => {
    throw new CriError("Unimplemented", `${call}: ${why}`);
  };
const NO_PROCESSES = "unikernels have no shell/process model; there is nothing to run a command in";

export const execSync = refuse("ExecSync", NO_PROCESSES);
export const exec = refuse("Exec", NO_PROCESSES);
export const attach = refuse(
  "Attach",
  "unikernels have no shell/process model; the guest console is in the container log (crictl logs)",
);
export const portForward = refuse(
  "PortForward",
  "a Xen guest has no network namespace to enter; reach the pod on its IP (crictl inspectp)",
);
