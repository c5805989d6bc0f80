// One side of a migration's TLS connection as a message channel: DATA frames go to a callback
// synchronously and in order (so END is only seen after every DATA before it), header, END and
// control frames queue for whoever awaits them. Any failure (peer error frame, socket error, close,
// inactivity timeout) fails the channel once, rejects every waiter and tears the socket down.
import type tls from "node:tls";
import { MigrationError } from "./errors.js";
import {
  type ControlMessage,
  FrameDecoder,
  type Frame,
  type StreamHeader,
  decodeControl,
  decodeHeader,
  encodeControl,
  encodeFrameHead,
} from "./framing.js";

export type ChannelMessage =
  { kind: "header"; header: StreamHeader } | { kind: "end" } | { kind: "control"; message: ControlMessage };

export class FrameChannel {
  private readonly decoder = new FrameDecoder();
  private readonly queue: ChannelMessage[] = [];
  private readonly waiters: { resolve: (m: ChannelMessage) => void; reject: (e: MigrationError) => void }[] =
    [];
  private readonly failureListeners: ((err: MigrationError) => void)[] = [];
  private failure: MigrationError | undefined;
  private finished = false;
  /** Receives DATA payloads in stream order; a DATA frame without a handler is a protocol error. */
  onData: ((payload: Buffer) => void) | undefined;

  constructor(
    readonly socket: tls.TLSSocket,
    private readonly peer: string,
    timeoutMs: number,
  ) {
    // The switch-over's small frames (end, restored, go, running) go at once, not held by Nagle until
    // the peer's (delayed) ACK of what went before: they are all inside the guest's downtime.
    socket.setNoDelay(true);
    socket.setTimeout(timeoutMs, () =>
      this.fail(
        new MigrationError("StreamTimeout", `nothing received from or sent to ${peer} for ${timeoutMs} ms`),
      ),
    );
    socket.on("data", (chunk: Buffer) => {
      try {
        for (const frame of this.decoder.push(chunk)) this.dispatch(frame);
      } catch (err) {
        this.fail(err instanceof MigrationError ? err : new MigrationError("ProtocolError", String(err)));
      }
    });
    socket.on("error", (err) =>
      this.fail(new MigrationError("StreamFailed", `connection with ${peer}: ${err.message}`)),
    );
    socket.on("close", () => this.fail(new MigrationError("StreamFailed", `${peer} closed the connection`)));
  }

  private dispatch(frame: Frame): void {
    if (this.failure) return;
    switch (frame.type) {
      case "data":
        if (!this.onData)
          throw new MigrationError("ProtocolError", `${this.peer} sent stream data out of turn`);
        this.onData(frame.payload);
        return;
      case "header":
        return this.deliver({ kind: "header", header: decodeHeader(frame) });
      case "end":
        return this.deliver({ kind: "end" });
      case "control": {
        const message = decodeControl(frame);
        if (message.type === "error")
          return this.fail(new MigrationError(message.reason, `${this.peer}: ${message.message}`), false);
        return this.deliver({ kind: "control", message });
      }
    }
  }

  private deliver(m: ChannelMessage): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(m);
    else this.queue.push(m);
  }

  /** The next non-DATA message. */
  next(): Promise<ChannelMessage> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The next message, which must be control message `type`. */
  async expect<T extends ControlMessage["type"]>(type: T): Promise<Extract<ControlMessage, { type: T }>> {
    const m = await this.next();
    if (m.kind === "control" && m.message.type === type)
      return m.message as Extract<ControlMessage, { type: T }>;
    const got = m.kind === "control" ? m.message.type : m.kind;
    const err = new MigrationError("ProtocolError", `expected "${type}" from ${this.peer}, got "${got}"`);
    this.fail(err);
    throw err;
  }

  /** Writes raw frame bytes; false means "wait for drain" (Node's stream backpressure). */
  write(bytes: Buffer): boolean {
    if (this.failure) throw this.failure;
    return this.socket.write(bytes);
  }

  sendControl(message: ControlMessage): void {
    this.write(encodeControl(message));
  }

  /** Head and payload in one corked write: the stream's bytes are not copied into a frame. */
  sendData(payload: Buffer): boolean {
    if (this.failure) throw this.failure;
    this.socket.cork();
    this.socket.write(encodeFrameHead("data", payload.length));
    const more = this.socket.write(payload);
    this.socket.uncork();
    return more;
  }

  /** Fails the channel: tells the peer why (best effort, unless the peer told us), then tears down. */
  fail(err: MigrationError, tellPeer = true): void {
    if (this.failure || this.finished) return;
    this.failure = err;
    if (tellPeer && !this.socket.destroyed && this.socket.writable) {
      const frame = encodeControl({ type: "error", reason: err.reason, message: err.message });
      this.socket.end(frame);
      // A peer that stopped reading must not keep the socket alive.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.socket.destroy();
    }
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const l of this.failureListeners.splice(0)) l(err);
  }

  /** Calls `listener` once when the channel fails (at once if it already has). */
  onFailure(listener: (err: MigrationError) => void): void {
    if (this.failure) listener(this.failure);
    else if (!this.finished) this.failureListeners.push(listener);
  }

  /** A promise that rejects when the channel fails (never resolves), for Promise.race; safe to drop. */
  failure$(): Promise<never> {
    const p = new Promise<never>((_, reject) => this.onFailure(reject));
    p.catch(() => undefined);
    return p;
  }

  get failed(): MigrationError | undefined {
    return this.failure;
  }

  /** The protocol completed: close without it counting as a failure. */
  finish(): void {
    if (this.failure || this.finished) return;
    this.finished = true;
    this.failureListeners.length = 0;
    this.socket.setTimeout(0);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}
