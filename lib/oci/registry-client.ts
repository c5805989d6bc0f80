// A client of the OCI distribution API (/v2/): manifests and blobs, pull and push, with the two
// auth schemes registries use (Basic, and Bearer tokens from the realm the registry names).
import type { Readable } from "node:stream";
import { logger } from "../log.js";
import { httpRequest, readText, tlsSettings, type HttpResponse, type TlsSettings } from "./http.js";
import { MANIFEST_ACCEPT } from "./media-types.js";
import { registryEndpointHost } from "./reference.js";
import { OciError, type RegistryAuth, type RegistryOptions } from "./types.js";
import { readLimited, sha256Digest } from "./digest.js";

const log = logger("oci-registry");

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (one challenge; registries send one). */
export function parseChallenge(header: string): Challenge {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  const params: Record<string, string> = {};
  if (!m) return { scheme: "", params };
  for (const p of (m[2] ?? "").matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g))
    params[p[1]!.toLowerCase()] = p[2] ?? p[3] ?? "";
  return { scheme: m[1]!.toLowerCase(), params };
}

function credentials(auth: RegistryAuth | undefined): { username: string; password: string } | undefined {
  if (auth?.username !== undefined && auth.username !== "")
    return { username: auth.username, password: auth.password ?? "" };
  if (auth?.auth !== undefined && auth.auth !== "") {
    const decoded = Buffer.from(auth.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0)
      throw new OciError("Unauthorized", "auth config: `auth` is not base64 of username:password");
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

async function registryErrorText(res: HttpResponse): Promise<string> {
  const text = await readText(res.body);
  try {
    const doc = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    if (Array.isArray(doc.errors) && doc.errors.length > 0)
      return doc.errors.map((e) => `${e.code ?? "?"}: ${e.message ?? ""}`).join("; ");
  } catch {
    /* not JSON: the raw text says it */
  }
  return text.trim().slice(0, 300) || `HTTP ${res.status}`;
}

type Body = () => Buffer | Readable;

export class RegistryClient {
  private readonly base: URL;
  private readonly tls: TlsSettings;
  private readonly creds: { username: string; password: string } | undefined;
  /** Authorization header per scope, reused across requests of one client. */
  private readonly authHeaders = new Map<string, string>();

  constructor(
    readonly registry: string,
    private readonly opts: RegistryOptions = {},
  ) {
    this.base = new URL(`${opts.plainHttp ? "http" : "https"}://${registryEndpointHost(registry)}/v2/`);
    this.tls = tlsSettings(opts.caFile, opts.insecureSkipTLSVerify);
    if (opts.insecureSkipTLSVerify) log.warn("TLS verification disabled", { registry });
    this.creds = credentials(opts.auth);
    if (opts.auth?.registryToken) this.authHeaders.set("*", `Bearer ${opts.auth.registryToken}`);
  }

  private async authorize(challengeHeader: string | undefined, scope: string): Promise<string> {
    const who = this.creds ? `user ${JSON.stringify(this.creds.username)}` : "anonymous";
    const challenge = parseChallenge(challengeHeader ?? "");
    if (challenge.scheme === "basic") {
      if (!this.creds)
        throw new OciError(
          "Unauthorized",
          `registry ${this.registry} requires a username and password and none were given`,
        );
      return `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password}`).toString("base64")}`;
    }
    if (challenge.scheme === "bearer" && challenge.params.realm) {
      const realm = new URL(challenge.params.realm);
      if (challenge.params.service) realm.searchParams.set("service", challenge.params.service);
      // Ask for what this call needs and what the registry named (a HEAD's challenge says "pull"
      // only, but the token is cached for the push that follows).
      if (scope !== "") realm.searchParams.append("scope", scope);
      const named = challenge.params.scope;
      if (named !== undefined && named !== "" && named !== scope) realm.searchParams.append("scope", named);
      const headers: Record<string, string> = {};
      if (this.creds)
        headers.Authorization = `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password}`).toString("base64")}`;
      const res = await httpRequest({ method: "GET", url: realm, headers, tls: this.tls });
      if (res.status !== 200)
        throw new OciError(
          "Unauthorized",
          `token service ${realm.origin} refused ${who} for ${scope} (HTTP ${res.status}): ${await registryErrorText(res)}`,
        );
      const doc = JSON.parse(await readText(res.body)) as { token?: string; access_token?: string };
      const token = doc.token ?? doc.access_token;
      if (!token)
        throw new OciError("Unauthorized", `token service ${realm.origin} answered without a token`);
      return `Bearer ${token}`;
    }
    throw new OciError(
      "Unauthorized",
      `registry ${this.registry} asks for unsupported authentication ${JSON.stringify(challengeHeader ?? "")}`,
    );
  }

  /** One API call; on 401 it authenticates for `scope` and retries once. */
  private async call(
    method: "GET" | "HEAD" | "POST" | "PUT",
    pathOrUrl: string | URL,
    scope: string,
    headers: Record<string, string> = {},
    body?: Body,
  ): Promise<HttpResponse> {
    const url = typeof pathOrUrl === "string" ? new URL(pathOrUrl, this.base) : pathOrUrl;
    const send = (auth: string | undefined) =>
      httpRequest({
        method,
        url,
        headers: auth ? { ...headers, Authorization: auth } : headers,
        tls: this.tls,
        ...(body ? { body: body() } : {}),
      });
    const cached = this.authHeaders.get(scope) ?? this.authHeaders.get("*");
    let res = await send(cached);
    if (res.status !== 401) return res;
    // A cached token may have expired or cover less than this call needs: authenticate afresh.
    const challenge = res.headers["www-authenticate"];
    res.body.resume();
    const auth = await this.authorize(challenge, scope);
    res = await send(auth);
    if (res.status === 401) {
      const who = this.creds ? `user ${JSON.stringify(this.creds.username)}` : "the token";
      throw new OciError(
        "Unauthorized",
        `registry ${this.registry} refused ${who} (HTTP 401: wrong username or password?): ${await registryErrorText(res)}`,
      );
    }
    this.authHeaders.set(scope, auth);
    return res;
  }

  private async fail(res: HttpResponse, what: string): Promise<never> {
    const text = await registryErrorText(res);
    if (res.status === 404)
      throw new OciError("NotFound", `${what}: not found in ${this.registry} (${text})`);
    if (res.status === 403)
      throw new OciError("Unauthorized", `${what}: forbidden by ${this.registry} (${text})`);
    throw new OciError("Registry", `${what}: registry ${this.registry} answered HTTP ${res.status}: ${text}`);
  }

  /** GET /v2/ — a reachability and credentials check. */
  async ping(): Promise<void> {
    const res = await this.call("GET", "", "");
    if (res.status !== 200) await this.fail(res, "ping");
    res.body.resume();
  }

  async getManifest(
    repository: string,
    reference: string,
    maxBytes: number,
  ): Promise<{ bytes: Buffer; contentType: string | undefined; digest: string }> {
    const what = `manifest ${repository}:${reference}`;
    const res = await this.call(
      "GET",
      `${repository}/manifests/${reference}`,
      `repository:${repository}:pull`,
      { Accept: MANIFEST_ACCEPT },
    );
    if (res.status !== 200) await this.fail(res, what);
    const declared = Number(res.headers["content-length"] ?? "0");
    if (declared > maxBytes) {
      res.body.destroy();
      throw new OciError("TooLarge", `${what} is ${declared} bytes, over the ${maxBytes}-byte limit`);
    }
    const bytes = await readLimited(res.body, maxBytes, what);
    const digest = sha256Digest(bytes);
    // A tag has nothing to verify against but the digest the registry says it stored.
    const claimed = res.headers["docker-content-digest"];
    if (typeof claimed === "string" && claimed.startsWith("sha256:") && claimed !== digest)
      throw new OciError(
        "DigestMismatch",
        `${what}: content digest ${digest} does not match the registry's Docker-Content-Digest ${claimed}`,
      );
    return { bytes, contentType: res.headers["content-type"], digest };
  }

  /** The blob's bytes as a stream; the caller verifies digest and size while consuming it. */
  async getBlob(repository: string, digest: string): Promise<Readable> {
    const res = await this.call("GET", `${repository}/blobs/${digest}`, `repository:${repository}:pull`);
    if (res.status !== 200) await this.fail(res, `blob ${digest}`);
    return res.body;
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const res = await this.call(
      "HEAD",
      `${repository}/blobs/${digest}`,
      `repository:${repository}:pull,push`,
    );
    res.body.resume();
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.fail(res, `blob ${digest}`);
  }

  /** Monolithic upload: POST to open a session, PUT the bytes with their digest. */
  async pushBlob(repository: string, digest: string, size: number, body: Body): Promise<void> {
    const scope = `repository:${repository}:pull,push`;
    if (await this.hasBlob(repository, digest)) return;
    const start = await this.call("POST", `${repository}/blobs/uploads/`, scope, { "Content-Length": "0" });
    if (start.status !== 202) await this.fail(start, `upload of ${digest}`);
    start.body.resume();
    const location = start.headers.location;
    if (!location)
      throw new OciError("Registry", `registry ${this.registry} opened an upload without a Location`);
    const url = new URL(location, this.base);
    url.searchParams.set("digest", digest);
    const put = await this.call(
      "PUT",
      url,
      scope,
      { "Content-Type": "application/octet-stream", "Content-Length": String(size) },
      body,
    );
    if (put.status !== 201) await this.fail(put, `upload of ${digest}`);
    put.body.resume();
  }

  /** PUT a manifest under a tag; returns the digest the registry computed, checked against ours. */
  async putManifest(repository: string, tag: string, bytes: Buffer, mediaType: string): Promise<string> {
    const digest = sha256Digest(bytes);
    const res = await this.call(
      "PUT",
      `${repository}/manifests/${tag}`,
      `repository:${repository}:pull,push`,
      { "Content-Type": mediaType, "Content-Length": String(bytes.length) },
      () => bytes,
    );
    if (res.status !== 201) await this.fail(res, `manifest ${repository}:${tag}`);
    res.body.resume();
    const theirs = res.headers["docker-content-digest"];
    if (typeof theirs === "string" && theirs !== digest)
      throw new OciError(
        "DigestMismatch",
        `registry stored manifest ${repository}:${tag} as ${theirs}, we sent ${digest}`,
      );
    return digest;
  }
}
