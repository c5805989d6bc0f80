// A CRI handler: request message in, response message out, errors thrown (server.ts maps them).
import type { CriRuntime } from "../runtime.js";

export type Handler<Req = Record<string, unknown>, Res = Record<string, unknown>> = (
  rt: CriRuntime,
  req: Req,
) => Promise<Res>;
