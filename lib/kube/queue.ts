// A work queue with controller-runtime's contract: keys, not events, so that a burst of changes to one
// object becomes one reconcile; one worker per key at a time, so that two reconciles never race on
// the same object; failures come back after an exponential backoff, and a TerminalError does not.
import { logger } from "../log.js";

const log = logger("queue");

/** An error that retrying cannot fix (an invalid spec): the key is dropped until the object changes. */
export class TerminalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TerminalError";
  }
}

/** What a reconcile asks of the queue when it succeeds. */
export interface ReconcileResult {
  /** Reconcile again after this many milliseconds even if nothing changes (polling something unwatched). */
  requeueAfterMs?: number;
}

export type Reconciler = (key: string) => Promise<ReconcileResult | void>;

export interface QueueOptions {
  name: string;
  workers?: number;
  /** First retry delay; doubles on each consecutive failure of the same key. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Observes every reconcile (metrics). */
  onResult?: (outcome: "success" | "error" | "terminal", seconds: number) => void;
}

export class WorkQueue {
  private readonly pending: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  /** Keys that changed while being processed: they go back in the queue when the worker finishes. */
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** When each timer fires: a sooner request replaces a later one (an error's retry must not wait
   *  behind a deadline's requeue minutes away). */
  private readonly dueAt = new Map<string, number>();
  private readonly idleWaiters: (() => void)[] = [];
  private running = 0;
  private stopped = false;
  private readonly workers: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly reconcile: Reconciler,
    private readonly options: QueueOptions,
  ) {
    this.workers = options.workers ?? 4;
    this.baseDelayMs = options.baseDelayMs ?? 5;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
  }

  /** Keys waiting (not counting the ones being processed). */
  get depth(): number {
    return this.pending.length;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.pending.push(key);
    this.pump();
  }

  /** Adds the key after a delay; of two pending delays for the same key the sooner one wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key);
    const due = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing) {
      if ((this.dueAt.get(key) ?? 0) <= due) return;
      clearTimeout(existing);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.dueAt.delete(key);
      this.add(key);
    }, delayMs);
    this.timers.set(key, timer);
    this.dueAt.set(key, due);
  }

  /** The delay the next failure of this key would get. */
  backoffFor(key: string): number {
    const n = this.failures.get(key) ?? 0;
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** n);
  }

  private addRateLimited(key: string): void {
    const delay = this.backoffFor(key);
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
    this.addAfter(key, delay);
  }

  /** Resolves when nothing is queued, processing or waiting on a timer. */
  async idle(): Promise<void> {
    if (this.isIdle()) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.pending.length === 0 && this.running === 0 && this.timers.size === 0;
  }

  /** Stops taking work and waits for the reconciles in flight. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.dueAt.clear();
    this.pending.length = 0;
    this.queued.clear();
    this.dirty.clear();
    await this.idle();
  }

  private pump(): void {
    while (!this.stopped && this.running < this.workers && this.pending.length > 0) {
      const key = this.pending.shift()!;
      this.queued.delete(key);
      this.processing.add(key);
      this.running++;
      void this.work(key);
    }
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async work(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    let outcome: "success" | "error" | "terminal" = "success";
    try {
      const result = await this.reconcile(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      if (err instanceof TerminalError) {
        outcome = "terminal";
        this.failures.delete(key);
        log.warn("reconcile failed terminally; not retrying until the object changes", {
          queue: this.options.name,
          key,
          error: err.message,
        });
      } else {
        outcome = "error";
        log.info("reconcile failed; retrying with backoff", {
          queue: this.options.name,
          key,
          retryInMs: this.backoffFor(key),
          error: err instanceof Error ? err.message : String(err),
        });
        this.processing.delete(key);
        this.dirty.delete(key);
        this.addRateLimited(key);
      }
    } finally {
      this.options.onResult?.(outcome, Number(process.hrtime.bigint() - started) / 1e9);
      this.processing.delete(key);
      this.running--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
