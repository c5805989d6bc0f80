// One HTTP(S) request on node:http/https: streaming bodies both ways, a custom CA, redirects that
// never carry credentials to another host. (Node's global fetch cannot take a CA without undici.)
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import type { Readable } from "node:stream";
import { OciError } from "./types.js";

export interface TlsSettings {
  /** PEM of an extra CA, added to Node's bundled roots. */
  ca?: string;
  rejectUnauthorized: boolean;
}

export function tlsSettings(
  caFile: string | undefined,
  insecureSkipTLSVerify: boolean | undefined,
): TlsSettings {
  const settings: TlsSettings = { rejectUnauthorized: !insecureSkipTLSVerify };
  if (caFile !== undefined) {
    try {
      settings.ca = readFileSync(caFile, "utf8");
    } catch (err) {
      throw new OciError("Network", `cannot read CA file ${caFile}: ${(err as Error).message}`);
    }
  }
  return settings;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Readable;
  /** The URL that answered, after redirects. */
  url: URL;
}

export interface HttpRequest {
  method: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  tls: TlsSettings;
  timeoutMs?: number;
}

const MAX_REDIRECTS = 5;

function once(req: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const isHttps = req.url.protocol === "https:";
    const options: https.RequestOptions = {
      method: req.method,
      headers: req.headers ?? {},
      timeout: req.timeoutMs ?? 60_000,
    };
    if (isHttps) {
      options.rejectUnauthorized = req.tls.rejectUnauthorized;
      if (req.tls.ca !== undefined) options.ca = [...rootCertificates, req.tls.ca];
    }
    const r = (isHttps ? https : http).request(req.url, options, (res) =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url: req.url }),
    );
    r.on("timeout", () => r.destroy(new Error(`no answer within ${options.timeout} ms`)));
    r.on("error", (err) =>
      reject(new OciError("Network", `${req.method} ${req.url.origin}${req.url.pathname}: ${err.message}`)),
    );
    if (req.body === undefined) r.end();
    else if (Buffer.isBuffer(req.body)) r.end(req.body);
    else req.body.pipe(r);
  });
}

/** Headers that carry credentials: they never leave the origin (scheme, host and port) they were meant for. */
const CREDENTIAL_HEADERS = /^(authorization|proxy-authorization|cookie)$/i;

/**
 * Follows redirects for GET/HEAD. Credentials travel only to the original origin: a redirect to
 * another host or port, or from https to http on the same host, drops them for that hop and every
 * later one (a registry's blob store on another host gets none; nothing goes out in clear text).
 */
export async function httpRequest(req: HttpRequest): Promise<HttpResponse> {
  let current = req;
  for (let hop = 0; ; hop++) {
    const res = await once(current);
    const location = res.headers.location;
    if (
      ![301, 302, 303, 307, 308].includes(res.status) ||
      location === undefined ||
      (req.method !== "GET" && req.method !== "HEAD")
    )
      return res;
    res.body.resume();
    if (hop >= MAX_REDIRECTS) throw new OciError("Registry", `too many redirects from ${req.url.origin}`);
    const next = new URL(location, current.url);
    if (next.protocol !== "http:" && next.protocol !== "https:")
      throw new OciError("Registry", `${req.url.origin} redirected to a ${next.protocol} URL`);
    const headers = { ...(current.headers ?? {}) };
    if (next.origin !== req.url.origin)
      for (const k of Object.keys(headers)) if (CREDENTIAL_HEADERS.test(k)) delete headers[k];
    current = { ...current, url: next, headers };
  }
}

/** Drains a response body into a string, bounded (for error messages and small JSON answers). */
export async function readText(body: Readable, max = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (total < max) chunks.push(b.subarray(0, max - total));
    total += b.length;
  }
  return Buffer.concat(chunks).toString("utf8");
}
