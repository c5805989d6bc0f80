// The CRI endpoint: gRPC on a unix socket (mode 0600: whoever can talk CRI can start VMs). Every call
// goes through one wrapper that times it, logs it, and turns errors into gRPC status codes. With a
// dispatcher (a fallback runtime configured), the wrapper hands each call to it (dispatch/).
import * as grpc from "@grpc/grpc-js";
import { chmod, mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { logger } from "../../lib/log.js";
import { CriError, toGrpcStatus } from "./errors.js";
import { IMAGE_HANDLERS, RUNTIME_HANDLERS } from "./handlers/index.js";
import type { Handler } from "./handlers/types.js";
import type { Dispatcher } from "./dispatch/dispatcher.js";
import type { CriService } from "./dispatch/fallback.js";
import { RawReply, requestBytes, wrapDefinition } from "./dispatch/wire.js";
import { containerEvents } from "./handlers/container-events.js";
import { loadCriServices } from "./proto.js";
import type { CriRuntime } from "./runtime.js";

const log = logger("cri-server");
/** Calls the kubelet makes every few seconds: logged at debug so the log shows what changes. */
const CHATTY = new Set([
  "Version",
  "Status",
  "ListPodSandbox",
  "ListContainers",
  "ListImages",
  "ImageFsInfo",
  "ContainerStats",
  "ListContainerStats",
  "ListPodSandboxStats",
  "PodSandboxStatus",
  "ContainerStatus",
  "ImageStatus",
  "PodSandboxStats",
  "RuntimeConfig",
]);

function wrap(
  rt: CriRuntime,
  service: CriService,
  method: string,
  handler: Handler<never, unknown> | undefined,
  dispatcher: Dispatcher | undefined,
): grpc.handleUnaryCall<unknown, unknown> {
  const local = (req: unknown): Promise<unknown> =>
    handler
      ? handler(rt, req as never)
      : Promise.reject(new CriError("Unimplemented", `${method} is not implemented by superfluid`));
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const req = call.request as Record<string, unknown>;
    const answer = dispatcher
      ? dispatcher.dispatch(service, method, req, () => local(req), call.getDeadline())
      : local(req);
    answer.then(
      (response) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log.log(CHATTY.has(method) ? "debug" : "info", "call", { method, ms: Math.round(ms * 10) / 10 });
        callback(null, response);
      },
      (err: unknown) => {
        const { code, details } = toGrpcStatus(err);
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log.log(code === grpc.status.INTERNAL ? "error" : "warn", "call failed", {
          method,
          code: grpc.status[code],
          details,
          ms: Math.round(ms * 10) / 10,
          ...(code === grpc.status.INTERNAL && err instanceof Error ? { stack: err.stack } : {}),
        });
        callback({ code, details });
      },
    );
  };
}

function implementation(
  rt: CriRuntime,
  service: CriService,
  def: grpc.ServiceDefinition,
  handlers: Record<string, Handler<never, unknown>>,
  dispatcher: Dispatcher | undefined,
  streams: Record<string, grpc.handleServerStreamingCall<unknown, unknown>> = {},
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(def)) {
    const stream = streams[method];
    if (stream) {
      impl[method] = stream;
      continue;
    }
    const h = handlers[method];
    // Without a fallback, a method we lack stays UNIMPLEMENTED by grpc-js; with one, it is forwarded.
    if (h || dispatcher) impl[method] = wrap(rt, service, method, h, dispatcher);
  }
  return impl;
}

export class CriServer {
  private readonly server = new grpc.Server({ "grpc.max_receive_message_length": 16 << 20 });
  /** The open GetContainerEvents streams, each by the function that ends it. */
  private readonly eventStreams = new Set<() => void>();

  constructor(
    private readonly rt: CriRuntime,
    readonly socketPath: string,
    dispatcher?: Dispatcher,
  ) {
    const services = loadCriServices();
    const runtime = wrapDefinition(services.runtime);
    const image = wrapDefinition(services.image);
    this.server.addService(
      runtime,
      implementation(rt, "runtime", runtime, RUNTIME_HANDLERS, dispatcher, {
        GetContainerEvents: this.events(dispatcher),
      }),
    );
    this.server.addService(image, implementation(rt, "image", image, IMAGE_HANDLERS, dispatcher));
  }

  /**
   * GetContainerEvents: ours, and with a fallback runtime its stream's messages too, passed through as
   * bytes. A stream ends when the kubelet leaves, when the shim closes, or with the fallback's error
   * when the fallback's stream fails (the kubelet then reconnects; after repeated failures it goes
   * back to relisting every second).
   */
  private events(dispatcher: Dispatcher | undefined): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      // The fallback's stream first: should opening it throw, nothing of ours is subscribed yet.
      const theirs = dispatcher?.fallback?.streamRaw(
        "runtime",
        "GetContainerEvents",
        requestBytes(call.request) ?? Buffer.alloc(0),
      );
      const stopOurs = containerEvents(this.rt, (m) => call.write(m));
      let open = true;
      const end = (status?: { code: grpc.status; details: string }, cancelled = false) => {
        if (!open) return;
        open = false;
        stopOurs();
        this.eventStreams.delete(end);
        theirs?.cancel();
        log.info("GetContainerEvents: stream ended", {
          why: cancelled ? "cancelled" : (status?.details ?? "shim closing"),
        });
        if (cancelled) return;
        if (status) call.emit("error", status);
        else call.end();
      };
      theirs?.on("data", (bytes: Buffer) => call.write(new RawReply(bytes)));
      theirs?.on("error", (err: grpc.ServiceError) =>
        end({ code: err.code, details: `fallback runtime's events: ${err.details}` }),
      );
      theirs?.on("end", () =>
        end({ code: grpc.status.UNAVAILABLE, details: "the fallback runtime's event stream ended" }),
      );
      call.on("cancelled", () => end(undefined, true));
      this.eventStreams.add(end);
      log.info("GetContainerEvents: stream opened", { fallback: theirs !== undefined });
    };
  }

  async listen(): Promise<void> {
    await mkdir(dirname(this.socketPath), { recursive: true, mode: 0o755 });
    await rm(this.socketPath, { force: true }); // a stale socket of a killed shim
    await new Promise<void>((resolve, reject) =>
      this.server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    await chmod(this.socketPath, 0o600);
    log.info("CRI listening", { socket: this.socketPath });
  }

  /** Lets calls in flight finish (up to graceMs), then closes the socket. */
  async close(graceMs = 5000): Promise<void> {
    for (const end of [...this.eventStreams]) end();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await rm(this.socketPath, { force: true });
  }
}
