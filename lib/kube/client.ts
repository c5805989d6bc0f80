// A small REST client over the kubeconfig's credentials. The generated client-node APIs do not reach
// every subresource with every patch type (server-side apply on /status, for one); this does, with
// one keep-alive agent so that a thousand reconciles do not mean a thousand TLS handshakes, a
// client-side rate limit (QPS and burst, as client-go's), and a count of every request by verb and
// resource, so that what a controller costs the apiserver is measured rather than guessed.
import type { KubeCredentials } from "./kubeconfig.js";
import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from "node:https";
import { createSecureContext } from "node:tls";
import { RequestCounter, TokenBucket } from "./rate.js";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ApiError && e.status === 404;
export const isConflict = (e: unknown): boolean => e instanceof ApiError && e.status === 409;
export const isAlreadyExists = (e: unknown): boolean =>
  e instanceof ApiError && e.status === 409 && e.reason === "AlreadyExists";

export type ContentType =
  | "application/json"
  | "application/merge-patch+json"
  | "application/apply-patch+yaml"
  | "application/json-patch+json";

export interface RequestSpec {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: ContentType;
  /** Another form of the answer than JSON objects (e.g. metadata only: PartialObjectMetadataList). */
  accept?: string;
}

export interface ClientOptions {
  /** Sustained requests per second (client-go's QPS); 0 or undefined: unlimited. Watches are not limited. */
  qps?: number;
  /** Requests allowed at once above the sustained rate (client-go's burst). */
  burst?: number;
}

/** One event of a watch stream. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: unknown;
}

export interface WatchStream {
  close(): void;
}

export class KubeClient {
  private readonly url: URL;
  private agent?: HttpAgent | HttpsAgent;
  /** Watches hold their connection for minutes: they get their own sockets, not the request pool's. */
  private watchAgent?: HttpAgent | HttpsAgent;
  private auth?: { opts: RequestOptions; at: number };
  private readonly limiter?: TokenBucket;
  /** Requests sent, by verb and resource ("create pods", "patch unikernelvms/status", "watch nodes"). */
  readonly requests = new RequestCounter();

  constructor(
    readonly kc: KubeCredentials,
    options: ClientOptions = {},
  ) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.url = new URL(cluster.server);
    if (options.qps && options.qps > 0)
      this.limiter = new TokenBucket(options.qps, Math.max(1, options.burst ?? options.qps));
  }

  private async connection(): Promise<{ opts: RequestOptions; secure: boolean }> {
    // Credentials are re-read every few seconds, not per request: in a pod the projected
    // service-account token rotates (hourly), and reading files per request costs at 1000 VMs.
    if (!this.auth || Date.now() - this.auth.at > 10_000) {
      const fresh: RequestOptions = {};
      await this.kc.applyToHTTPSOptions(fresh);
      this.auth = { opts: fresh, at: Date.now() };
    }
    return { opts: this.auth.opts, secure: this.url.protocol === "https:" };
  }

  private makeAgent(opts: RequestOptions, secure: boolean, maxSockets: number): HttpAgent | HttpsAgent {
    // One TLS context for every socket of the pool: given ca/cert/key instead, Node parses the PEMs
    // into a new context per connection (a tenth of the operator's CPU while its pool grows).
    return secure
      ? new HttpsAgent({
          keepAlive: true,
          maxSockets,
          secureContext: createSecureContext({ ca: opts.ca, cert: opts.cert, key: opts.key }),
          rejectUnauthorized: opts.rejectUnauthorized,
          servername: opts.servername,
        })
      : new HttpAgent({ keepAlive: true, maxSockets });
  }

  private requestOptions(
    opts: RequestOptions,
    secure: boolean,
    method: string,
    path: string,
    query: RequestSpec["query"],
    headers: Record<string, string>,
    agent: HttpAgent | HttpsAgent,
  ): RequestOptions {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) q.set(k, String(v));
    const qs = q.toString();
    return {
      protocol: this.url.protocol,
      hostname: this.url.hostname.replace(/^\[|\]$/g, ""),
      port: this.url.port || (secure ? 443 : 80),
      path: `${this.url.pathname.replace(/\/$/, "")}${path}${qs ? `?${qs}` : ""}`,
      method,
      headers: {
        Accept: "application/json",
        ...(opts.headers as Record<string, string> | undefined),
        ...headers,
      },
      agent,
      ...(opts.auth ? { auth: opts.auth } : {}),
    };
  }

  async request<T>(spec: RequestSpec): Promise<T> {
    if (this.limiter) await this.limiter.take();
    const { opts, secure } = await this.connection();
    this.agent ??= this.makeAgent(opts, secure, 256);
    this.requests.count(spec.method, spec.path, spec.query);
    const payload = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    const headers: Record<string, string> = spec.accept ? { Accept: spec.accept } : {};
    if (payload !== undefined) {
      headers["Content-Type"] = spec.contentType ?? "application/json";
      headers["Content-Length"] = String(Buffer.byteLength(payload));
    }
    const send = secure ? httpsRequest : httpRequest;
    return await new Promise<T>((resolve, reject) => {
      const req = send(
        {
          ...this.requestOptions(opts, secure, spec.method, spec.path, spec.query, headers, this.agent!),
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              try {
                resolve((text ? JSON.parse(text) : {}) as T);
              } catch {
                reject(
                  new ApiError(status, "BadResponse", `${spec.method} ${spec.path}: response is not JSON`),
                );
              }
              return;
            }
            let reason = "Unknown";
            let message = text.slice(0, 500);
            try {
              const s = JSON.parse(text) as { reason?: string; message?: string };
              reason = s.reason ?? reason;
              message = s.message ?? message;
            } catch {
              /* not a Status object */
            }
            reject(new ApiError(status, reason, `${spec.method} ${spec.path}: ${status} ${message}`));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${spec.method} ${spec.path}: timed out`)));
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** Server-side apply: the object as this manager wants it; fields it stops sending are removed. */
  apply<T>(path: string, object: unknown, fieldManager: string, subresource?: "status"): Promise<T> {
    return this.request<T>({
      method: "PATCH",
      path: subresource ? `${path}/${subresource}` : path,
      query: { fieldManager, force: true },
      body: object,
      contentType: "application/apply-patch+yaml",
    });
  }

  /**
   * A watch: onEvent for every event of the newline-delimited stream, onEnd once when it ends (err
   * undefined when the server closed it normally, at timeoutSeconds). `headers` may ask for another
   * form of the objects (Accept: metadata only).
   */
  watch(
    path: string,
    query: RequestSpec["query"],
    onEvent: (e: WatchEvent) => void,
    onEnd: (err?: Error) => void,
    headers: Record<string, string> = {},
  ): WatchStream {
    let ended = false;
    let closed = false;
    const end = (err?: Error) => {
      if (ended) return;
      ended = true;
      onEnd(closed ? undefined : err);
    };
    let req: ReturnType<typeof httpRequest> | undefined;
    this.connection().then(({ opts, secure }) => {
      if (closed) return end();
      this.watchAgent ??= this.makeAgent(opts, secure, Infinity);
      this.requests.count("GET", path, { ...query, watch: true });
      const send = secure ? httpsRequest : httpRequest;
      req = send(
        this.requestOptions(opts, secure, "GET", path, { ...query, watch: true }, headers, this.watchAgent),
        (res: IncomingMessage) => {
          if ((res.statusCode ?? 0) >= 300) {
            res.resume();
            return end(new ApiError(res.statusCode ?? 0, "WatchFailed", `watch ${path}: ${res.statusCode}`));
          }
          let buffered = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffered += chunk;
            let nl: number;
            while ((nl = buffered.indexOf("\n")) >= 0) {
              const line = buffered.slice(0, nl).trim();
              buffered = buffered.slice(nl + 1);
              if (!line) continue;
              try {
                onEvent(JSON.parse(line) as WatchEvent);
              } catch (err) {
                req?.destroy(err instanceof Error ? err : new Error(String(err)));
                return;
              }
            }
          });
          res.on("end", () => end());
          res.on("error", (e) => end(e));
          res.on("close", () => end());
        },
      );
      req.on("error", (e) => end(e));
      req.end();
    }, end);
    return {
      close() {
        closed = true;
        req?.destroy();
        end();
      },
    };
  }

  close(): void {
    this.agent?.destroy();
    this.watchAgent?.destroy();
  }
}

/** REST paths of the kinds the operator touches. */
export const paths = {
  pods: (ns?: string) => (ns ? `/api/v1/namespaces/${ns}/pods` : "/api/v1/pods"),
  pod: (ns: string, name: string) => `/api/v1/namespaces/${ns}/pods/${name}`,
  services: (ns?: string) => (ns ? `/api/v1/namespaces/${ns}/services` : "/api/v1/services"),
  service: (ns: string, name: string) => `/api/v1/namespaces/${ns}/services/${name}`,
  nodes: () => "/api/v1/nodes",
  events: (ns: string) => `/api/v1/namespaces/${ns}/events`,
  custom: (plural: string, ns?: string) =>
    ns
      ? `/apis/superfluid.dev/v1alpha1/namespaces/${ns}/${plural}`
      : `/apis/superfluid.dev/v1alpha1/${plural}`,
  customObject: (plural: string, ns: string, name: string) =>
    `/apis/superfluid.dev/v1alpha1/namespaces/${ns}/${plural}/${name}`,
  leases: (ns: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  lease: (ns: string, name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`,
};
