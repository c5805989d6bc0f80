// Target side of a migration (docs/migration-stream.md): one pinned mutual-TLS connection, the
// source's spec, a paused restore fed from DATA frames through a socketpair, then the switch-over.
// Whatever fails or is cancelled before the commit, no half-restored domain and no listener is left
// behind; with a `handover`, the paused copy is kept while the recorded decision is open, and after
// the commit it is never destroyed here (an unpause that keeps failing leaves it paused, named).
import { once } from "node:events";
import tls from "node:tls";
import { failpoint, isSimulatedCrash, MIGRATION_FAILPOINTS as FP } from "../../../lib/failpoints.js";
import { logger } from "../../../lib/log.js";
import { type DomainSpec, type Hypervisor, HypervisorError } from "../hypervisor/types.js";
import type { IncomingMigration, ReceivedDomain, ReceiveOptions } from "./receive-types.js";
import { FrameChannel } from "./channel.js";
import { MigrationError } from "./errors.js";
import { STREAM_CIPHERS } from "./framing.js";
import { certificateFingerprint, normalizeFingerprint } from "./identity.js";
import { DEFAULT_TIMEOUT_MS } from "./send.js";
import { streamSocketpair } from "./socketpair.js";

const log = logger("migration-receive");
/** How long the target waits for the source to connect at all (the source agent may be slow to see
 *  the endpoint in the API); cancel() ends the wait sooner. */
export const DEFAULT_ACCEPT_TIMEOUT_MS = 10 * 60_000;

/** How often an unpause of a committed domain is tried before the receive gives up (domain left paused). */
export const UNPAUSE_ATTEMPTS = 3;

export type { IncomingMigration, ReceivedDomain, ReceiveOptions, TargetHandover } from "./receive-types.js";

/** Target side: listens on host:0 for ONE mutual-TLS connection whose client certificate's fingerprint
 *  equals `await sourceFingerprint()` (asked when the connection arrives, so it can be read from the
 *  API then). `targetSpec(sourceSpec)` gives the DomainSpec to restore with (same MAC, this node's
 *  bridge, a new name if wanted). */
export async function receiveDomain(opts: ReceiveOptions): Promise<IncomingMigration> {
  const { identity } = opts;
  if (!identity || typeof identity.certPem !== "string" || typeof identity.keyPem !== "string")
    throw new MigrationError("InvalidArgument", "identity must come from createIdentity()");
  if (typeof opts.host !== "string" || opts.host.length === 0)
    throw new MigrationError(
      "InvalidArgument",
      `host must be an address to listen on, got ${JSON.stringify(opts.host)}`,
    );
  for (const [name, v] of [
    ["timeoutMs", opts.timeoutMs],
    ["acceptTimeoutMs", opts.acceptTimeoutMs],
  ] as const)
    if (v !== undefined && !(Number.isFinite(v) && v > 0))
      throw new MigrationError("InvalidArgument", `${name} must be positive, got ${JSON.stringify(v)}`);

  const server = tls.createServer({
    key: identity.keyPem,
    cert: identity.certPem,
    minVersion: "TLSv1.3",
    ciphers: STREAM_CIPHERS,
    honorCipherOrder: true,
    // Ask for the source's certificate but judge it ourselves, against the pinned fingerprint.
    requestCert: true,
    rejectUnauthorized: false,
  });
  let settle!: { resolve: (r: ReceivedDomain) => void; reject: (e: MigrationError) => void };
  const result = new Promise<ReceivedDomain>((resolve, reject) => (settle = { resolve, reject }));
  result.catch(() => undefined); // the caller may only look at it later
  let session: ReceiveSession | undefined;
  let checking = false;
  let done = false;
  const finish = (outcome: { ok: ReceivedDomain } | { err: MigrationError }): void => {
    if (done) return;
    done = true;
    clearTimeout(acceptTimer);
    server.close();
    if ("ok" in outcome) settle.resolve(outcome.ok);
    else settle.reject(outcome.err);
  };

  server.on("secureConnection", (socket: tls.TLSSocket) => {
    socket.on("error", () => undefined); // reported through the session's channel, or irrelevant
    if (session || checking || done) return void socket.destroy();
    checking = true;
    void (async () => {
      const peer = socket.getPeerX509Certificate();
      const got = peer ? certificateFingerprint(peer) : undefined;
      let want: string | undefined;
      try {
        const pinned = await opts.sourceFingerprint();
        want = pinned === undefined ? undefined : normalizeFingerprint(pinned, "sourceFingerprint");
      } catch (err) {
        log.warn("cannot get the source's fingerprint", { err: String(err) });
      }
      checking = false;
      if (done) return void socket.destroy();
      if (!got || got !== want) {
        // Not our source: drop it without a byte and keep waiting for the right one.
        log.warn("refused a migration connection with an unpinned certificate", {
          remote: socket.remoteAddress,
          got,
          want,
        });
        return void socket.destroy();
      }
      server.close(); // ONE connection: no one else gets in now.
      session = new ReceiveSession(opts, socket);
      session.run().then(
        (ok) => finish({ ok }),
        (err: MigrationError) => finish({ err }),
      );
    })();
  });
  server.on("tlsClientError", (err) => log.warn("migration TLS handshake failed", { err: err.message }));

  server.listen(0, opts.host);
  await once(server, "listening").catch((err: unknown) => {
    throw new MigrationError("InvalidArgument", `cannot listen on ${opts.host}: ${String(err)}`);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const acceptTimeoutMs = opts.acceptTimeoutMs ?? DEFAULT_ACCEPT_TIMEOUT_MS;
  const acceptTimer = setTimeout(() => {
    if (!session)
      finish({
        err: new MigrationError("StreamTimeout", `no source connected within ${acceptTimeoutMs} ms`),
      });
  }, acceptTimeoutMs);
  acceptTimer.unref();
  log.info("waiting for a migration stream", { host: opts.host, port });

  return {
    port,
    result,
    async cancel(reason: string) {
      const err = new MigrationError("Cancelled", `migration cancelled on the target: ${reason}`);
      if (session) await session.abort(err);
      finish({ err });
      await result.catch(() => undefined);
    },
  };
}

/** One accepted connection, from the header to "running". */
class ReceiveSession {
  private readonly ch: FrameChannel;
  private restoring: Promise<number> | undefined;
  private domid: number | undefined;
  private running = false;
  /** The recorded commit was seen: this domain is the VM now, never destroyed here. */
  private committed = false;
  /** Restored and recorded: from here only the recorded decision may destroy it. */
  private held = false;
  private bytes = 0;
  private pair: ReturnType<typeof streamSocketpair> | undefined;
  private readonly finished: Promise<void>;
  private markFinished!: () => void;

  constructor(
    private readonly opts: ReceiveOptions,
    socket: tls.TLSSocket,
  ) {
    this.ch = new FrameChannel(
      socket,
      `source ${socket.remoteAddress ?? "?"}`,
      opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
    this.finished = new Promise((resolve) => (this.markFinished = resolve));
  }

  async run(): Promise<ReceivedDomain> {
    try {
      return await this.receive();
    } catch (err) {
      if (isSimulatedCrash(err)) {
        this.ch.socket.destroy(); // a killed process's connection dies with it; nothing else is touched
        throw err;
      }
      const failure =
        err instanceof MigrationError
          ? err
          : new MigrationError("RestoreFailed", String(err), { cause: err });
      this.ch.fail(failure);
      await this.cleanUp();
      throw failure;
    } finally {
      this.markFinished();
    }
  }

  /** Fails the session (the source hears why) and waits until its domain and fds are gone. */
  async abort(err: MigrationError): Promise<void> {
    this.ch.fail(err);
    await this.finished;
  }

  private async receive(): Promise<ReceivedDomain> {
    const { hv } = this.opts;
    this.ch.sendControl({ type: "accept" });
    const first = await this.ch.next();
    if (first.kind !== "header")
      throw new MigrationError("ProtocolError", `expected the stream header, got ${first.kind}`);
    const sourceSpec = first.header.spec;
    const spec = await this.opts.targetSpec(sourceSpec);
    // Refuse before the source stops its domain, not after the stream is over.
    const { freeMemoryKiB } = await hv.host();
    if (spec.memoryMiB * 1024 > freeMemoryKiB)
      throw new MigrationError(
        "TargetOutOfMemory",
        `domain ${spec.name} needs ${spec.memoryMiB} MiB, this node's Xen has ${Math.floor(freeMemoryKiB / 1024)} MiB free`,
      );

    let attempt = this.startRestore(spec);
    let end = await Promise.race([this.ch.next(), attempt.failed]);
    while (end.kind === "control" && end.message.type === "restart") {
      // The source could not pre-copy (no log-dirty on its Xen) and starts over stop-and-copy.
      if (this.bytes === attempt.bytesAtStart) {
        // Nothing of the first stream came (the lean source finds out before its first byte): the
        // restore in progress, its domain and vifs made or being made, still waits for the header.
        log.info("the source restarts its stream before sending any of it; the restore waits on");
        attempt.sayReady();
      } else {
        log.warn("the source restarts its stream; dropping the restore in progress");
        await this.abandonRestore();
        attempt = this.startRestore(spec);
      }
      end = await Promise.race([this.ch.next(), attempt.failed]);
    }
    if (end.kind !== "end")
      throw new MigrationError("ProtocolError", `expected the end of the stream, got ${end.kind}`);
    const { pair, restoring } = attempt;
    const endedAt = performance.now();
    pair.socket.end(); // libxl stops at the stream's END record; EOF only matters for a truncated stream
    const domid = await Promise.race([
      restoring.catch((err: unknown) => {
        throw this.ch.failed ?? restoreError(err);
      }),
      this.ch.failure$(),
    ]);
    const restoredAt = performance.now();
    const { handover } = this.opts;
    if (handover) await handover.restored(domid);
    failpoint(FP.targetBeforeCommit);
    this.ch.sendControl({ type: "restored", domid });
    const saidAt = performance.now();
    let decision: "commit" | "abort" = "commit";
    if (handover) {
      this.held = true;
      // "go" is only ever sent after the commit is recorded: it is a shortcut to the same answer.
      const recorded = handover.decision();
      recorded.catch(() => undefined);
      decision = await Promise.race([
        this.ch.expect("go").then(
          () => "commit" as const,
          () => recorded,
        ),
        recorded,
      ]);
      this.held = false;
      if (decision === "abort")
        throw new MigrationError("Aborted", "the source recorded the abort; dropping the paused copy");
      this.committed = true;
    } else {
      await this.ch.expect("go");
      this.committed = true;
    }
    const committedAt = performance.now();
    failpoint(FP.targetAfterCommit);
    await unpauseCommitted(hv, domid);
    this.running = true;
    const unpausedAt = performance.now();
    const restoreMs = Math.round(unpausedAt - endedAt);
    const rel = (at: number) => Math.round(at - endedAt);
    const timeline = {
      restored: rel(restoredAt),
      said: rel(saidAt),
      committed: rel(committedAt),
      unpaused: rel(unpausedAt),
    };
    if (!this.ch.failed) this.ch.sendControl({ type: "running", domid });
    this.opts.onUnpaused?.(domid, spec); // after "running": the source's downtime is the guest's
    this.ch.finish();
    pair.closeLibxlEnd();
    const bytes = this.bytes;
    log.info("migration received", { domid, bytes, restoreMs, name: spec.name, ...timeline });
    return { domid, bytes, restoreMs, sourceSpec, timeline };
  }

  /** A paused restore reading from a fresh socketpair that DATA frames feed; tells the source "ready"
   *  once its domain is prepared. */
  private startRestore(spec: DomainSpec): {
    pair: ReturnType<typeof streamSocketpair>;
    restoring: Promise<number>;
    failed: Promise<never>;
    bytesAtStart: number;
    /** Says "ready" once the domain is prepared (at once if it already is). */
    sayReady: () => void;
  } {
    const bytesAtStart = this.bytes;
    // "ready" goes out once the domain exists with its vifs and waits only for the stream: the
    // source stops its guest then, so building them (netback's probe) is not downtime.
    let markPrepared!: () => void;
    const prepared = new Promise<void>((resolve) => (markPrepared = resolve));
    const sayReady = (): void =>
      void prepared.then(() => {
        if (!this.ch.failed) this.ch.sendControl({ type: "ready" });
      });
    const pair = (this.pair = streamSocketpair());
    pair.socket.on("error", () => undefined); // libxl closing its end early shows up as the restore's error
    this.ch.onData = (payload) => {
      this.bytes += payload.length;
      this.opts.onProgress?.(this.bytes);
      if (!pair.socket.write(payload)) {
        this.ch.socket.pause();
        pair.socket.once("drain", () => this.ch.socket.resume());
      }
    };
    // A dead connection must stop libxl: closing our end gives its read EOF, and it gives up.
    this.ch.onFailure(() => pair.socket.destroy());
    const restoring = (this.restoring = this.opts.hv.restore(spec, pair.libxlFd, {
      paused: true,
      onPrepared: markPrepared,
    }));
    restoring.then(
      (domid) => (this.domid = domid),
      () => undefined,
    );
    const failed = restoring.then(
      () => new Promise<never>(() => undefined),
      (err: unknown) => {
        throw this.ch.failed ?? restoreError(err);
      },
    );
    failed.catch(() => undefined); // only raced while the stream flows
    sayReady();
    return { pair, restoring, failed, bytesAtStart, sayReady };
  }

  /** Stops the restore in progress and removes what it built, keeping the connection. */
  private async abandonRestore(): Promise<void> {
    this.pair?.socket.destroy();
    await this.restoring?.catch(() => undefined);
    this.pair?.closeLibxlEnd();
    if (this.domid !== undefined) await this.destroyHalfRestored(this.domid);
    this.domid = undefined;
    this.ch.socket.resume(); // it may have been paused waiting for the old socketpair to drain
  }

  private async destroyHalfRestored(domid: number): Promise<void> {
    await this.opts.hv.destroy(domid).then(
      () => log.info("destroyed the half-migrated domain", { domid }),
      (err: unknown) => log.error("cannot destroy the half-migrated domain", { domid, err: String(err) }),
    );
  }

  /** After a failure: stop libxl, wait for it, destroy whatever it built, close the fds. */
  private async cleanUp(): Promise<void> {
    this.pair?.socket.destroy();
    if (this.restoring) await this.restoring.catch(() => undefined);
    this.pair?.closeLibxlEnd();
    if (this.domid !== undefined && !this.running && !this.committed && !this.held)
      await this.destroyHalfRestored(this.domid);
    else if (this.domid !== undefined && !this.running)
      log.warn("receive failed with the copy kept paused: the recorded decision settles it", {
        domid: this.domid,
        committed: this.committed,
      });
  }
}

/** After the commit: unpause, a few times if needed; never destroys (the domain is the VM now). */
async function unpauseCommitted(hv: Hypervisor, domid: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      failpoint(FP.targetUnpause);
      await hv.unpause(domid);
      return;
    } catch (err) {
      if (isSimulatedCrash(err)) throw err;
      if (attempt >= UNPAUSE_ATTEMPTS)
        throw new MigrationError(
          "UnpauseFailed",
          `unpausing committed domain ${domid} failed ${attempt} times (kept paused): ${String(err)}`,
        );
      log.warn("unpausing the committed domain failed; trying again", { domid, attempt, err: String(err) });
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

function restoreError(err: unknown): MigrationError {
  if (err instanceof HypervisorError && err.code === "OutOfMemory")
    return new MigrationError("TargetOutOfMemory", err.message, { cause: err });
  return new MigrationError(
    "RestoreFailed",
    `restoring the stream failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}
