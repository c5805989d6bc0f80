// The registry flags the image CLIs share (`npm run image`, `npm run images`).
import type { RegistryOptions } from "../lib/oci/index.js";

/** A mistake in the command line: the CLI prints it with its usage and exits 2. */
export class UsageError extends Error {}

export const REGISTRY_FLAGS_USAGE = `registry flags:
  --insecure                   plain HTTP (a loopback registry without TLS)
  --ca <file>                  PEM of the CA that signed the registry's certificate
  --insecure-skip-tls-verify   accept any certificate
  --user <user:password>       basic credentials (or REGISTRY_AUTH=user:password in the environment)`;

export const registryFlags = {
  insecure: { type: "boolean" },
  ca: { type: "string" },
  "insecure-skip-tls-verify": { type: "boolean" },
  user: { type: "string" },
} as const;

export function registryOptions(values: {
  insecure?: boolean;
  ca?: string;
  "insecure-skip-tls-verify"?: boolean;
  user?: string;
}): RegistryOptions {
  const opts: RegistryOptions = {};
  if (values.insecure) opts.plainHttp = true;
  if (values.ca !== undefined) opts.caFile = values.ca;
  if (values["insecure-skip-tls-verify"]) opts.insecureSkipTLSVerify = true;
  const user = values.user ?? process.env.REGISTRY_AUTH;
  if (user !== undefined) {
    const colon = user.indexOf(":");
    if (colon <= 0) throw new UsageError("--user must be user:password");
    opts.auth = { username: user.slice(0, colon), password: user.slice(colon + 1) };
  }
  return opts;
}

/** True for an argv parse error of node:util's parseArgs (an unknown flag, a missing value). */
export function isParseArgsError(err: unknown): err is TypeError {
  return err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS");
}
