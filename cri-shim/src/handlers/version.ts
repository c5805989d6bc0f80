import { RUNTIME_NAME, RUNTIME_VERSION } from "../runtime.js";
import type { Handler } from "./types.js";

export const version: Handler<{ version: string }> = async () => ({
  version: "0.1.0",
  runtime_name: RUNTIME_NAME,
  runtime_version: RUNTIME_VERSION,
  runtime_api_version: "v1",
});
