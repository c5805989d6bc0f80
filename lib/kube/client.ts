// A small REST client over the kubeconfig's credentials. The generated client-node APIs do not reach
// every subresource with every patch type (server-side apply on /status, for one); this does, with
// one keep-alive agent so that a thousand reconciles do not mean a thousand TLS handshakes.
import type { KubeConfig } from "@kubernetes/client-node";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from "node:https";

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
}

export class KubeClient {
  private readonly url: URL;
  private agent?: HttpAgent | HttpsAgent;
  private auth?: { opts: RequestOptions; at: number };

  constructor(readonly kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.url = new URL(cluster.server);
  }

  async request<T>(spec: RequestSpec): Promise<T> {
    // Credentials are re-read every few seconds, not per request: in a pod the projected
    // service-account token rotates (hourly), and reading files per request costs at 1000 VMs.
    if (!this.auth || Date.now() - this.auth.at > 10_000) {
      const fresh: RequestOptions = {};
      await this.kc.applyToHTTPSOptions(fresh);
      this.auth = { opts: fresh, at: Date.now() };
    }
    const opts = this.auth.opts;
    const secure = this.url.protocol === "https:";
    this.agent ??= secure
      ? new HttpsAgent({
          keepAlive: true,
          maxSockets: 256,
          ca: opts.ca,
          cert: opts.cert,
          key: opts.key,
          rejectUnauthorized: opts.rejectUnauthorized,
          servername: opts.servername,
        })
      : new HttpAgent({ keepAlive: true, maxSockets: 256 });
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) query.set(k, String(v));
    const qs = query.toString();
    const payload = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    const headers: Record<string, string> = {
      Accept: "application/json",
      ...(opts.headers as Record<string, string> | undefined),
    };
    if (payload !== undefined) {
      headers["Content-Type"] = spec.contentType ?? "application/json";
      headers["Content-Length"] = String(Buffer.byteLength(payload));
    }
    const send = secure ? httpsRequest : httpRequest;
    return await new Promise<T>((resolve, reject) => {
      const req = send(
        {
          protocol: this.url.protocol,
          hostname: this.url.hostname.replace(/^\[|\]$/g, ""),
          port: this.url.port || (secure ? 443 : 80),
          path: `${this.url.pathname.replace(/\/$/, "")}${spec.path}${qs ? `?${qs}` : ""}`,
          method: spec.method,
          headers,
          agent: this.agent,
          ...(opts.auth ? { auth: opts.auth } : {}),
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

  close(): void {
    this.agent?.destroy();
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
