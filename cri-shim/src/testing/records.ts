// Store records for unit tests: a container's status with every required field, overridable.
import type { ContainerStatusRecord } from "../services/model.js";

export function containerRecord(over: Partial<ContainerStatusRecord> = {}): ContainerStatusRecord {
  return {
    state: "running",
    startedAt: "0",
    finishedAt: "0",
    exitCode: 0,
    reason: "",
    message: "",
    memoryMiB: 16,
    vcpus: 1,
    ...over,
  };
}
