// The CRI front: every call is observed (whose id, which handler, which pod, which image), planned
// (plan.ts, pure) and carried out here — by our handler, by the fallback runtime over its socket
// (bytes in, bytes out), or by both with the answers merged. Handlers stay unaware of the fallback.
import type * as grpc from "@grpc/grpc-js";
import { logger } from "../../../lib/log.js";
import { CriError } from "../errors.js";
import { pullAuthOf } from "../services/image-backend.js";
import type { AuthConfig } from "../proto.js";
import type { CriRuntime } from "../runtime.js";
import type { CriService, FallbackRuntime } from "./fallback.js";
import { BY_CONTAINER, BY_SANDBOX, planCall, type Backend, type Facts, type Plan } from "./plan.js";
import { mergeStatus, type StatusReply } from "./status-merge.js";
import { concatReplies, EncodedList, RawReply, requestBytes } from "./wire.js";

const log = logger("cri-dispatch");
const FULL_ID = /^[0-9a-f]{64}$/;

type Req = Record<string, unknown>;
type Local = () => Promise<unknown>;

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const obj = (v: unknown): Req | undefined => (typeof v === "object" && v !== null ? (v as Req) : undefined);

/**
 * Our ImageFsInfo names our image store as the container file system too (a unikernel has no
 * writable layer). Beside containerd that would be wrong: its containers write under its own root,
 * and a kubelet given no container file system takes the image one (containerd's, listed first).
 */
function withoutContainerFs(method: string, reply: unknown): unknown {
  return method === "ImageFsInfo" ? { ...(reply as Req), container_filesystems: [] } : reply;
}

export class Dispatcher {
  constructor(
    private readonly rt: CriRuntime,
    readonly fallback: FallbackRuntime | undefined,
  ) {}

  async dispatch(
    service: CriService,
    method: string,
    req: Req,
    local: Local,
    deadline?: grpc.Deadline,
  ): Promise<unknown> {
    const plan = planCall(await this.observe(method, req));
    const fb = this.fallback;
    if (!fb || (plan.do === "one" && plan.backend === "ours")) return local();
    log.debug("dispatch", { method, plan: plan.do, why: plan.why });
    const forward = async (): Promise<RawReply> =>
      new RawReply(await fb.callRaw(service, method, this.bytes(service, method, req), deadline));
    switch (plan.do) {
      case "one":
        return forward();
      case "merge": {
        // The fallback's entries first: the kubelet reads ImageFsInfo's first file system as the node's.
        const [theirs, ours] = await Promise.all([forward(), local()]);
        const encode = (v: unknown) => fb.encode(service, method, v);
        const mine =
          ours instanceof EncodedList ? ours.encode(encode) : encode(withoutContainerFs(method, ours));
        return concatReplies(theirs.bytes, mine);
      }
      case "status": {
        const ours = (await local()) as StatusReply;
        const theirs = await fb
          .call<StatusReply>("runtime", "Status", req, deadline)
          .catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }));
        return mergeStatus(ours, theirs);
      }
      case "both": {
        const ours = await local();
        await forward();
        return ours;
      }
      case "image-lookup": {
        const ref = str(obj(req.image)?.image);
        return ref && (await this.rt.images.get(ref)) ? local() : forward();
      }
      case "image-format":
        return (await this.imageBackend(req)) === "ours" ? local() : forward();
    }
  }

  /** The facts plan.ts needs; only what the method looks at is read. */
  private async observe(method: string, req: Req): Promise<Facts> {
    const facts: Facts = {
      method,
      hasFallback: this.fallback !== undefined,
      ourHandlers: this.rt.ctx.options.runtimeHandlers,
    };
    if (!this.fallback) return facts;
    if (method === "RunPodSandbox") facts.runtimeHandler = str(req.runtime_handler);
    else if (BY_SANDBOX[method]) facts.idIsOurs = await this.owns("sandbox", str(req.pod_sandbox_id));
    else if (BY_CONTAINER[method]) facts.idIsOurs = await this.owns("container", str(req.container_id));
    else if (method === "PullImage" || method === "ImageStatus" || method === "RemoveImage") {
      facts.runtimeHandler = str(obj(req.image)?.runtime_handler) || undefined;
      const uid = str(obj(obj(req.sandbox_config)?.metadata)?.uid);
      if (uid) facts.podIsOurs = this.rt.ctx.sandboxes.list().some((s) => s.meta.metadata.uid === uid);
    }
    return facts;
  }

  /**
   * Ours when our store resolves the id. The kubelet always sends full ids (random 256-bit, as
   * containerd's); a short prefix (crictl) that both sides resolve is refused as ambiguous.
   */
  private async owns(kind: "sandbox" | "container", id: string): Promise<boolean> {
    if (!id) return false;
    const store = kind === "sandbox" ? this.rt.ctx.sandboxes : this.rt.ctx.containers;
    if (!store.resolve(id)) return false;
    if (FULL_ID.test(id) || !this.fallback) return true;
    const list = kind === "sandbox" ? "ListPodSandbox" : "ListContainers";
    const theirs = await this.fallback
      .call<{ items?: unknown[]; containers?: unknown[] }>("runtime", list, { filter: { id } })
      .catch(() => ({ items: [], containers: [] }));
    if ((theirs.items ?? theirs.containers ?? []).length > 0)
      throw new CriError(
        "InvalidArgument",
        `${kind} id prefix ${id} matches in both runtimes; give more of it`,
      );
    return true;
  }

  /** PullImage with nothing but the reference: a unikernel image is ours, anything else the fallback's. */
  private async imageBackend(req: Req): Promise<Backend> {
    const ref = str(obj(req.image)?.image);
    if (!ref) return "ours"; // our handler refuses it with the usual message
    const format = await this.rt.images
      .format(ref, pullAuthOf(obj(req.auth) as AuthConfig | undefined))
      .catch((err: unknown) => {
        // Unreachable or unknown to us: the fallback (with its own registry settings) gives the verdict.
        log.info("image format unknown, pulling through the fallback", { ref, err: String(err) });
        return "linux" as const;
      });
    return format === "unikernel" ? "ours" : "fallback";
  }

  private bytes(service: CriService, method: string, req: Req): Buffer {
    const raw = requestBytes(req);
    if (raw) return raw;
    throw new CriError("Internal", `${service}.${method}: request bytes were not kept for forwarding`);
  }
}

export type { Plan };
