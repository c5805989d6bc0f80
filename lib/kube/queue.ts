// A work queue with controller-runtime's contract: keys, not events, so that a burst of changes to one
// object becomes one reconcile; one worker per key at a time, so that two reconciles never race on
// the same object; failures come back after an exponential backoff, and a TerminalError does not.
// Two priorities, as controller-runtime's priority queue has: high keys go first, and while high
// work is recent only a few low keys run at once, so that the writes that settle objects (status,
// finalizers) leave the apiserver to the ones that make what a user waits for (pods).
import { logger } from "../log.js";

const log = logger("queue");

/** An error that retrying cannot fix (an invalid spec): the key is dropped until the object changes. */
export class TerminalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TerminalError";
  }
}

export type Priority = "high" | "low";

/** What a reconcile asks of the queue when it succeeds. */
export interface ReconcileResult {
  /** Reconcile again after this many milliseconds even if nothing changes (polling something unwatched). */
  requeueAfterMs?: number;
  /** The priority of that requeue (default high). */
  priority?: Priority;
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
  /** Low keys running at once while high work is recent (default: workers, no limit). */
  lowWorkersWhileBusy?: number;
  /**
   * While high work is recent, a low key waits this long before it may take one of those workers
   * (default 0): a burst shorter than this has the apiserver to itself, a longer one lets the
   * oldest low keys trickle through, so that nothing waits for ever.
   */
  lowDelayWhileBusyMs?: number;
  /** How long after the last high key the queue still counts as busy (default 250 ms). */
  busyHoldMs?: number;
}

/** FIFO of keys at one priority; a key moved to the other lane is skipped here (lazy removal). */
class Lane {
  private keys: string[] = [];
  private since: number[] = [];
  private head = 0;
  push(key: string, at: number): void {
    this.keys.push(key);
    this.since.push(at);
  }
  /** When the first key for which stillHere is true was pushed (stale keys before it are dropped). */
  oldest(stillHere: (key: string) => boolean): number | undefined {
    while (this.head < this.keys.length && !stillHere(this.keys[this.head]!)) this.advance();
    return this.head < this.keys.length ? this.since[this.head] : undefined;
  }
  /** The next key for which stillHere is true. */
  shift(stillHere: (key: string) => boolean): string | undefined {
    while (this.head < this.keys.length) {
      const k = this.keys[this.head]!;
      this.advance();
      if (stillHere(k)) return k;
    }
    return undefined;
  }
  private advance(): void {
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.since = this.since.slice(this.head);
      this.head = 0;
    }
  }
  clear(): void {
    this.keys = [];
    this.since = [];
    this.head = 0;
  }
}

const rank = (p: Priority | undefined) => (p === "high" ? 2 : p === "low" ? 1 : 0);
const higher = (a: Priority | undefined, b: Priority): Priority => (rank(a) >= rank(b) ? a! : b);

export class WorkQueue {
  private readonly lanes: Record<Priority, Lane> = { high: new Lane(), low: new Lane() };
  /** Waiting keys and their priority. */
  private readonly queued = new Map<string, Priority>();
  private readonly processing = new Set<string>();
  /** Keys that changed while being processed: they go back in the queue when the worker finishes. */
  private readonly dirty = new Map<string, Priority>();
  private runningHigh = 0;
  private runningLow = 0;
  private lastHighAt = -Infinity;
  private busyTimer?: NodeJS.Timeout;
  private busyTimerAt = Infinity;
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
    this.lowWhileBusy = Math.max(1, Math.min(this.workers, options.lowWorkersWhileBusy ?? this.workers));
    this.busyHoldMs = options.busyHoldMs ?? 250;
    this.lowDelayWhileBusyMs = options.lowDelayWhileBusyMs ?? 0;
  }

  private readonly lowWhileBusy: number;
  private readonly busyHoldMs: number;
  private readonly lowDelayWhileBusyMs: number;

  /** Keys waiting (not counting the ones being processed). */
  get depth(): number {
    return this.queued.size;
  }

  /** Queues the key; a key already waiting keeps the higher of its two priorities. */
  add(key: string, priority: Priority = "high"): void {
    if (this.stopped) return;
    if (priority === "high") this.lastHighAt = performance.now();
    if (this.processing.has(key)) {
      this.dirty.set(key, higher(this.dirty.get(key), priority));
      return;
    }
    const was = this.queued.get(key);
    if (was === priority || was === "high") return;
    this.queued.set(key, priority);
    this.lanes[priority].push(key, performance.now());
    this.pump();
  }

  /** Adds the key after a delay; of two pending delays for the same key the sooner one wins. */
  addAfter(key: string, delayMs: number, priority: Priority = "high"): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key, priority);
    const due = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing) {
      if ((this.dueAt.get(key) ?? 0) <= due) return;
      clearTimeout(existing);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.dueAt.delete(key);
      this.add(key, priority);
    }, delayMs);
    this.timers.set(key, timer);
    this.dueAt.set(key, due);
  }

  /** The delay the next failure of this key would get. */
  backoffFor(key: string): number {
    const n = this.failures.get(key) ?? 0;
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** n);
  }

  private addRateLimited(key: string, priority: Priority): void {
    const delay = this.backoffFor(key);
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
    this.addAfter(key, delay, priority);
  }

  /** Resolves when nothing is queued, processing or waiting on a timer. */
  async idle(): Promise<void> {
    if (this.isIdle()) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.queued.size === 0 && this.running === 0 && this.timers.size === 0;
  }

  /** High keys wait or run, or one was added within busyHoldMs. */
  private busyAt(now: number): boolean {
    return this.runningHigh > 0 || now - this.lastHighAt < this.busyHoldMs;
  }

  /** High work is recent: background work of the same process (Events) may hold back too. */
  get busy(): boolean {
    return this.busyAt(performance.now());
  }

  /** Stops taking work and waits for the reconciles in flight. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.dueAt.clear();
    if (this.busyTimer) clearTimeout(this.busyTimer);
    this.busyTimer = undefined;
    this.lanes.high.clear();
    this.lanes.low.clear();
    this.queued.clear();
    this.dirty.clear();
    await this.idle();
  }

  private pump(): void {
    const now = performance.now();
    const isLow = (k: string) => this.queued.get(k) === "low";
    /** When held low keys may go: the end of the busy spell, or the oldest one's delay, whichever first. */
    let retryAt: number | undefined;
    while (!this.stopped && this.running < this.workers && this.queued.size > 0) {
      let priority: Priority = "high";
      let key = this.lanes.high.shift((k) => this.queued.get(k) === "high");
      if (key === undefined) {
        if (this.busyAt(now)) {
          const oldest = this.lanes.low.oldest(isLow);
          if (oldest === undefined) break;
          // A finishing reconcile pumps again; a timer only for the time-based ends.
          const busyEnd = this.runningHigh > 0 ? Infinity : this.lastHighAt + this.busyHoldMs;
          const due = oldest + this.lowDelayWhileBusyMs;
          if (this.runningLow >= this.lowWhileBusy || due > now) {
            retryAt = this.runningLow >= this.lowWhileBusy ? busyEnd : Math.min(busyEnd, due);
            break;
          }
        }
        key = this.lanes.low.shift(isLow);
        priority = "low";
      }
      if (key === undefined) break;
      this.queued.delete(key);
      this.processing.add(key);
      this.running++;
      if (priority === "high") this.runningHigh++;
      else this.runningLow++;
      void this.work(key, priority);
    }
    // Low keys held back for recent high work: look again when that stops being recent or the
    // oldest has waited long enough (a finishing reconcile looks again too).
    // A timer set for a later time (an oldest key's delay, while high work ran) is brought forward
    // when the busy spell now ends sooner: held keys must not wait out the delay on an idle queue.
    if (retryAt !== undefined && retryAt < Infinity && (!this.busyTimer || retryAt < this.busyTimerAt)) {
      if (this.busyTimer) clearTimeout(this.busyTimer);
      const wait = Math.max(1, retryAt - now);
      this.busyTimerAt = retryAt;
      this.busyTimer = setTimeout(() => {
        this.busyTimer = undefined;
        this.pump();
      }, wait);
    }
    if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async work(key: string, priority: Priority): Promise<void> {
    const started = process.hrtime.bigint();
    let outcome: "success" | "error" | "terminal" = "success";
    try {
      const result = await this.reconcile(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined)
        this.addAfter(key, result.requeueAfterMs, result.priority ?? "high");
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
        this.addRateLimited(key, priority);
      }
    } finally {
      this.options.onResult?.(outcome, Number(process.hrtime.bigint() - started) / 1e9);
      this.processing.delete(key);
      this.running--;
      if (priority === "high") {
        this.runningHigh--;
        this.lastHighAt = performance.now();
      } else this.runningLow--;
      const again = this.dirty.get(key);
      if (again !== undefined) {
        this.dirty.delete(key);
        this.add(key, again);
      }
      this.pump();
    }
  }
}
