// The node's other CRI runtime (containerd with runc), reached on its unix socket. Calls go out as
// raw bytes (see wire.ts) with the caller's deadline; any failure becomes a FallbackError carrying the
// fallback's own gRPC code, or UNAVAILABLE with the endpoint named when the socket does not answer.
import * as grpc from "@grpc/grpc-js";
import { FallbackError } from "../errors.js";
import { loadCriServices } from "../proto.js";

export type CriService = "runtime" | "image";

const identity = (b: Buffer): Buffer => b;
const DEFAULT_DEADLINE_MS = 2 * 60_000;

/** unix:///run/containerd/containerd.sock, unix:/x or a bare path -> the path. */
export function socketPathOf(endpoint: string): string {
  const path = endpoint.replace(/^unix:(\/\/)?/, "");
  if (!path.startsWith("/"))
    throw new Error(`fallback runtime endpoint ${JSON.stringify(endpoint)}: only unix sockets are supported`);
  return path;
}

export class FallbackRuntime {
  private readonly client: grpc.Client;
  private readonly defs: Record<CriService, grpc.ServiceDefinition>;
  readonly socketPath: string;

  constructor(readonly endpoint: string) {
    this.socketPath = socketPathOf(endpoint);
    const services = loadCriServices();
    this.defs = { runtime: services.runtime, image: services.image };
    this.client = new grpc.Client(`unix://${this.socketPath}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 16 << 20,
      // Reconnect soon after containerd comes back rather than after the default backoff (up to 120 s).
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 2000,
    });
  }

  /** Sends already-encoded request bytes; resolves with the encoded response. */
  callRaw(service: CriService, method: string, bytes: Buffer, deadline?: grpc.Deadline): Promise<Buffer> {
    const def = this.defs[service][method];
    if (!def) return Promise.reject(new FallbackError(grpc.status.UNIMPLEMENTED, `no method ${method}`));
    const when =
      deadline === undefined || deadline === Infinity ? new Date(Date.now() + DEFAULT_DEADLINE_MS) : deadline;
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(def.path, identity, identity, bytes, { deadline: when }, (err, value) => {
        if (err) reject(this.error(method, err));
        else resolve(value ?? Buffer.alloc(0));
      });
    });
  }

  /** Opens a server stream with already-encoded request bytes; its messages arrive as their bytes. */
  streamRaw(service: CriService, method: string, bytes: Buffer): grpc.ClientReadableStream<Buffer> {
    const def = this.defs[service][method];
    if (!def) throw new FallbackError(grpc.status.UNIMPLEMENTED, `no method ${method}`);
    return this.client.makeServerStreamRequest(def.path, identity, identity, bytes, {});
  }

  /** Encodes a request with our proto, calls, decodes the answer. */
  async call<Res>(service: CriService, method: string, req: object, deadline?: grpc.Deadline): Promise<Res> {
    const def = this.defs[service][method];
    if (!def) throw new FallbackError(grpc.status.UNIMPLEMENTED, `no method ${method}`);
    const bytes = await this.callRaw(service, method, def.requestSerialize(req), deadline);
    return def.responseDeserialize(bytes) as Res;
  }

  encode(service: CriService, method: string, res: unknown): Buffer {
    return this.defs[service][method]!.responseSerialize(res);
  }

  private error(method: string, err: grpc.ServiceError): FallbackError {
    const where = `fallback runtime ${this.endpoint}`;
    if (err.code === grpc.status.UNAVAILABLE)
      return new FallbackError(err.code, `${where} is unavailable (${method}): ${err.details}`);
    return new FallbackError(err.code, `${where}: ${err.details}`);
  }

  close(): void {
    this.client.close();
  }
}
