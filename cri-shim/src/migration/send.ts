// Source side of a migration (docs/migration-stream.md): pin the target, send the domain's spec,
// stream libxl's save records through a socketpair pump, then the switch-over handshake. With a
// `handover` the commit is recorded durably (in the API) before "go"; until then the source domain can
// always be resumed; after it, it is kept suspended until the target's domain runs, then destroyed.
import tls from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { failpoint, isSimulatedCrash, MIGRATION_FAILPOINTS as FP } from "../../../lib/failpoints.js";
import { logger } from "../../../lib/log.js";
import type { DomainSpec, Hypervisor } from "../hypervisor/types.js";
import { FrameChannel } from "./channel.js";
import { MigrationError } from "./errors.js";
import { encodeFrame, encodeHeader, PROTOCOL_VERSION, STREAM_CIPHERS } from "./framing.js";
import { type MigrationIdentity, certificateFingerprint, normalizeFingerprint } from "./identity.js";
import { streamSocketpair } from "./socketpair.js";

const log = logger("migration-send");
export const DEFAULT_TIMEOUT_MS = 30_000;
/** How often the source polls its domain's state to catch the moment it stopped running. */
const SUSPEND_POLL_MS = 10;

export interface SendResult {
  bytes: number;
  totalMs: number;
  /** source domain suspended -> target says running, on the source's clock */ downtimeMs: number;
  switchedAt: Date;
  /** Whether live pre-copy was used: false for stop-and-copy, also when live was asked for but this
   *  Xen cannot track dirty pages and `stopAndCopyFallback` allowed the restart. */
  live: boolean;
  /** Where the downtime went, ms on the source's clock from the domain seen suspended (or the
   *  stream's end when that was missed): the save done, the stream's last byte handed to TLS, the
   *  target's "restored", the commit recorded, the target running. */
  timeline: { saved: number; streamEnded: number; restored: number; committed: number; running: number };
}

/** The durable commit point, as the source sees it (the node agent records it in the migration's status). */
export interface SourceHandover {
  /** Records Committed=True. Resolves "commit" once it is recorded, "abort" when the record says it may
   *  not commit (nothing written); throws when the outcome is unknown (then the domain stays suspended). */
  commit(targetDomid: number): Promise<"commit" | "abort">;
  /** Records Committed=False (best effort: only this source ever commits, so resuming is safe anyway). */
  abort(why: string): Promise<void>;
  /** Resolves once TargetRunning=True is recorded (the suspended copy may go then). */
  targetRunning(): Promise<void>;
}

export interface SendOptions {
  hv: Hypervisor;
  domid: number;
  spec: DomainSpec;
  endpoint: string /* host:port */;
  identity: MigrationIdentity;
  targetFingerprint: string;
  live: boolean;
  timeoutMs?: number /* inactivity timeout, default 30 s */;
  onProgress?: (bytes: number) => void;
  /** When live pre-copy is impossible on this Xen (LiveMigrationUnsupported, found before the guest
   *  stops), restart the stream stop-and-copy on the same connection. Default true. */
  stopAndCopyFallback?: boolean;
  /** The commit point in the API. Without it "go" is the commit (as xl's), and the source domain is
   *  destroyed only once the target said "running" (kept suspended, sourceResumed false, otherwise). */
  handover?: SourceHandover;
}

export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m =
    typeof endpoint === "string" ? /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(endpoint) : null;
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535)
    throw new MigrationError(
      "InvalidArgument",
      `endpoint must be host:port, got ${JSON.stringify(endpoint)}`,
    );
  return { host: (m[1] ?? m[2])!, port };
}

/** Connects and pins the target's certificate; nothing is written before the pin matched. */
function connectPinned(
  endpoint: string,
  identity: MigrationIdentity,
  fingerprint: string,
  timeoutMs: number,
): Promise<tls.TLSSocket> {
  const { host, port } = parseEndpoint(endpoint);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      key: identity.keyPem,
      cert: identity.certPem,
      minVersion: "TLSv1.3",
      ciphers: STREAM_CIPHERS,
      // No CA: the certificate is self-signed and trusted only through the pinned fingerprint below.
      rejectUnauthorized: false,
    });
    const unreachable = (why: string): void => {
      socket.destroy();
      reject(new MigrationError("TargetUnreachable", `cannot reach the target at ${endpoint}: ${why}`));
    };
    socket.setTimeout(timeoutMs, () => unreachable(`no TLS handshake within ${timeoutMs} ms`));
    socket.once("error", (err) => unreachable(err.message));
    socket.once("secureConnect", () => {
      socket.removeAllListeners("error");
      socket.setTimeout(0);
      const peer = socket.getPeerX509Certificate();
      const got = peer ? certificateFingerprint(peer) : "none";
      if (got !== fingerprint) {
        socket.destroy();
        reject(
          new MigrationError(
            "PeerRejected",
            `the target at ${endpoint} presented certificate ${got}, not the pinned ${fingerprint}`,
          ),
        );
        return;
      }
      resolve(socket);
    });
  });
}

/** Watches the domain while libxl saves it; remembers the last moment it was seen running. */
function watchSuspend(hv: Hypervisor, domid: number): { stop(): Promise<number | undefined> } {
  let lastRunning = performance.now();
  let suspendedAfter: number | undefined;
  let stopped = false;
  const loop = (async () => {
    while (!stopped && suspendedAfter === undefined) {
      const d = await hv.info(domid).catch(() => undefined);
      if (d && (d.state === "shutdown" || d.state === "paused" || d.state === "dying"))
        suspendedAfter = lastRunning;
      else {
        // The guest stopped after this moment at the earliest: downtime measured from here is never short.
        lastRunning = performance.now();
        await sleep(SUSPEND_POLL_MS);
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return suspendedAfter;
    },
  };
}

async function validate(opts: SendOptions): Promise<void> {
  const { hv, domid, spec, identity } = opts;
  if (!Number.isInteger(domid) || domid < 1)
    throw new MigrationError(
      "InvalidArgument",
      `domid must be a guest domain id, got ${JSON.stringify(domid)}`,
    );
  if (typeof spec !== "object" || spec === null || typeof spec.name !== "string")
    throw new MigrationError("InvalidArgument", "spec must be the source domain's DomainSpec");
  if (!identity || typeof identity.certPem !== "string" || typeof identity.keyPem !== "string")
    throw new MigrationError("InvalidArgument", "identity must come from createIdentity()");
  if (opts.timeoutMs !== undefined && !(Number.isFinite(opts.timeoutMs) && opts.timeoutMs > 0))
    throw new MigrationError(
      "InvalidArgument",
      `timeoutMs must be positive, got ${JSON.stringify(opts.timeoutMs)}`,
    );
  parseEndpoint(opts.endpoint);
  const d = await hv.info(domid);
  if (!d || !["running", "blocked", "paused"].includes(d.state))
    throw new MigrationError(
      "InvalidArgument",
      `domain ${domid} ${d ? `is ${d.state}` : "does not exist"}; only a live domain can migrate`,
    );
}

/** Source side. Sends `spec` (the source domain's DomainSpec) first, then libxl's live (or, live=false,
 *  stop-and-copy) stream over mutual TLS pinned to targetFingerprint. Protocol after the stream, as xl's:
 *  target "restored (paused)" -> [handover.commit(): the durable commit point] -> source "go" ->
 *  target unpauses -> "running" (or TargetRunning recorded) -> the source domain is destroyed. Any failure before "go": the source domain is resumed and MigrationError
 *  (sourceResumed: true) is thrown. */
export async function sendDomain(opts: SendOptions): Promise<SendResult> {
  await validate(opts);
  const { hv, domid, endpoint } = opts;
  let live = opts.live;
  const targetFingerprint = normalizeFingerprint(opts.targetFingerprint, "targetFingerprint");
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const started = performance.now();
  // Nothing has touched the domain yet: a failure to connect leaves it running as it was.
  const socket = await connectPinned(endpoint, opts.identity, targetFingerprint, timeoutMs).catch(
    (err: unknown) => {
      throw err instanceof MigrationError ? err.withSourceResumed(true) : err;
    },
  );
  const ch = new FrameChannel(socket, `target ${endpoint}`, timeoutMs);
  let bytes = 0;
  let pastNoReturn = false;
  let targetHasCopy = false;
  let commitUnknown = false;
  try {
    await ch.expect("accept").catch((err: MigrationError) => {
      // The target closes without a word when our certificate is not the one it pinned.
      throw err.reason === "StreamFailed"
        ? new MigrationError("PeerRejected", `the target refused this source's certificate (${err.message})`)
        : err;
    });
    ch.write(encodeHeader({ version: PROTOCOL_VERSION, live, spec: opts.spec }));
    await ch.expect("ready");

    const counted = (n: number): void => {
      bytes += n;
      opts.onProgress?.(bytes);
    };
    let streamed: Awaited<ReturnType<typeof streamOut>>;
    for (;;) {
      try {
        streamed = await streamOut({ ...opts, live }, ch, counted);
        break;
      } catch (err) {
        const fallback =
          live &&
          opts.stopAndCopyFallback !== false &&
          !ch.failed &&
          err instanceof MigrationError &&
          err.reason === "LiveMigrationUnsupported";
        if (!fallback) throw err;
        // libxl gave up before suspending the guest; make sure it runs, then start over without pre-copy.
        log.warn("live pre-copy is impossible on this Xen; restarting the stream stop-and-copy", { domid });
        await hv.resumeSuspended(domid);
        live = false;
        ch.sendControl({ type: "restart" });
        await ch.expect("ready");
      }
    }
    const { suspendedAt, streamEnded, savedAt } = streamed;
    ch.write(encodeFrame("end"));
    const restored = await ch.expect("restored");
    const restoredAt = performance.now();
    targetHasCopy = true; // from here a failure records the abort, so the target drops its paused copy
    failpoint(FP.sourceBeforeCommit);
    if (failpoint(FP.sourceCutBeforeCommit) === "cut") ch.socket.destroy();
    if (opts.handover) {
      const decided = await opts.handover.commit(restored.domid).catch((err: unknown) => {
        if (isSimulatedCrash(err)) throw err;
        commitUnknown = true;
        throw new MigrationError("CommitUnknown", `recording the commit: ${String(err)}`, { cause: err });
      });
      if (decided === "abort")
        throw new MigrationError("Aborted", "the migration's recorded state does not allow the commit");
    }
    pastNoReturn = true;
    const committedAt = performance.now();
    failpoint(FP.sourceAfterCommit);
    if (failpoint(FP.sourceCutAfterCommit) === "cut") ch.socket.destroy();
    else ch.sendControl({ type: "go" });
    // The suspended copy stays until the target's domain runs: heard on the socket, or recorded.
    const heard = ch.expect("running");
    const recorded = opts.handover?.targetRunning();
    if (recorded) await Promise.race([heard.catch(() => recorded), recorded]);
    else await heard;
    const runningAt = performance.now();
    ch.finish();
    await hv
      .destroy(domid)
      .catch((err: unknown) =>
        log.error("destroying the migrated source domain failed", { domid, err: String(err) }),
      );
    const from = suspendedAt ?? streamEnded;
    const rel = (at: number) => Math.round(at - from);
    const result: SendResult = {
      bytes,
      totalMs: Math.round(runningAt - started),
      downtimeMs: rel(runningAt),
      switchedAt: new Date(),
      live,
      timeline: {
        saved: rel(savedAt),
        streamEnded: rel(streamEnded),
        restored: rel(restoredAt),
        committed: rel(committedAt),
        running: rel(runningAt),
      },
    };
    log.info("migrated", { domid, endpoint, ...result, suspendSeen: suspendedAt !== undefined });
    return result;
  } catch (err) {
    if (isSimulatedCrash(err)) {
      ch.socket.destroy(); // a killed process's connection dies with it; nothing else is touched
      throw err;
    }
    const failure =
      err instanceof MigrationError ? err : new MigrationError("StreamFailed", String(err), { cause: err });
    ch.fail(failure);
    if (pastNoReturn || commitUnknown)
      throw new MigrationError(
        failure.reason,
        pastNoReturn
          ? `after the commit (source domain ${domid} kept suspended until the target runs): ${failure.message}`
          : `the commit may have been recorded (source domain ${domid} kept suspended): ${failure.message}`,
        { sourceResumed: false },
      );
    if (targetHasCopy && opts.handover)
      await opts.handover.abort(failure.message).catch((e: unknown) => {
        if (isSimulatedCrash(e)) throw e;
        log.warn("recording the abort failed; resuming anyway (only this source commits)", {
          err: String(e),
        });
      });
    throw await resumeAfter(hv, domid, failure);
  }
}

/** Runs libxl's save into a socketpair and pumps it into DATA frames; resolves once every byte is sent. */
async function streamOut(
  opts: SendOptions,
  ch: FrameChannel,
  counted: (n: number) => void,
): Promise<{ suspendedAt: number | undefined; savedAt: number; streamEnded: number }> {
  const pair = streamSocketpair();
  const pumped = new Promise<void>((resolve, reject) => {
    pair.socket.on("data", (chunk: Buffer) => {
      if (ch.failed) return;
      counted(chunk.length);
      if (!ch.sendData(chunk)) {
        pair.socket.pause();
        ch.socket.once("drain", () => pair.socket.resume());
      }
    });
    pair.socket.once("end", resolve);
    pair.socket.on("error", (err) =>
      reject(new MigrationError("StreamFailed", `reading libxl's stream: ${err.message}`)),
    );
  });
  pumped.catch(() => undefined); // awaited below only on the success path
  // A dead connection must stop libxl: closing our end makes its next write fail (EPIPE).
  ch.onFailure(() => pair.socket.destroy());
  const watch = watchSuspend(opts.hv, opts.domid);
  try {
    try {
      await opts.hv.migrateOut(opts.domid, pair.libxlFd, { live: opts.live });
    } catch (err) {
      // libxl's error is a consequence when the connection failed first: report the cause.
      if (ch.failed) throw ch.failed;
      // Pre-copy needs Xen's log-dirty mode, which for PV guests needs shadow paging: Debian's
      // Xen 4.17 is built without it (CONFIG_SHADOW_PAGING unset). libxl fails before suspending.
      if (opts.live && /enable logdirty/i.test(String(err)))
        throw new MigrationError(
          "LiveMigrationUnsupported",
          `this Xen cannot track a PV guest's dirty pages (log-dirty needs shadow paging, which this build lacks), so live pre-copy is impossible; migrate with live: false (mode: cold). libxl: ${String(err)}`,
          { cause: err },
        );
      throw new MigrationError("SourceFailed", `libxl could not save domain ${opts.domid}: ${String(err)}`, {
        cause: err,
      });
    } finally {
      pair.closeLibxlEnd();
    }
    const savedAt = performance.now();
    const suspendedAt = await watch.stop();
    await Promise.race([pumped, ch.failure$()]);
    return { suspendedAt, savedAt, streamEnded: performance.now() };
  } finally {
    await watch.stop();
    pair.socket.destroy();
  }
}

/** Before the point of no return: bring the source domain back and report whether that worked. */
async function resumeAfter(hv: Hypervisor, domid: number, failure: MigrationError): Promise<MigrationError> {
  try {
    await hv.resumeSuspended(domid);
    log.warn("migration failed; source domain resumed", {
      domid,
      reason: failure.reason,
      message: failure.message,
    });
    return failure.withSourceResumed(true);
  } catch (err) {
    log.error("migration failed and the source domain could not be resumed", { domid, err: String(err) });
    return new MigrationError(
      failure.reason,
      `${failure.message}; resuming source domain ${domid} failed: ${String(err)}`,
      { sourceResumed: false },
    );
  }
}
