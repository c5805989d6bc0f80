// core/v1 Events, recorded as client-go's recorder does: the same event again becomes a count on the
// one already written (a PATCH, not a new object); ten events of one reason on one object with
// different messages within ten minutes are combined into one; each object has a token bucket
// (25 at once, then one per five minutes) so a flapping object cannot flood the apiserver. Recording
// is best effort and asynchronous: a failed or dropped event never fails a reconcile.
import { hostname } from "node:os";
import { logger } from "../log.js";
import { isNotFound, type KubeClient, paths } from "./client.js";
import { TokenBucket } from "./rate.js";

const log = logger("events");

export interface EventTarget {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string };
}

export type EventType = "Normal" | "Warning";

export interface CorrelatorOptions {
  /** Same-reason events with different messages on one object before they are combined (client-go: 10). */
  maxSimilar?: number;
  /** How long the similar events are counted together (client-go: 10 minutes). */
  similarWindowMs?: number;
  /** Per-object bucket: events at once, then one per refillMs (client-go: 25, 5 minutes). */
  burst?: number;
  refillMs?: number;
  /** Entries remembered for dedupe and aggregation (client-go: 4096). */
  cacheSize?: number;
  now?: () => number;
}

export type Correlation =
  | { action: "drop" }
  | { action: "create"; key: string; message: string }
  | { action: "patch"; key: string; message: string; name: string; count: number; firstTimestamp: string };

interface Seen {
  name?: string;
  count: number;
  firstTimestamp: string;
}

/** A Map used as an LRU cache: reads move an entry to the end, the oldest goes when full. */
class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly size: number) {}
  get(k: string): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.size) this.map.delete(this.map.keys().next().value!);
  }
}

/** The pure part of the recorder: what to do with an event, given the ones before it. No I/O. */
export class EventCorrelator {
  private readonly similar: Lru<{ messages: Set<string>; since: number }>;
  private readonly seen: Lru<Seen>;
  private readonly buckets: Lru<TokenBucket>;
  private readonly o: Required<Omit<CorrelatorOptions, "now">>;
  private readonly now: () => number;

  constructor(options: CorrelatorOptions = {}) {
    this.o = {
      maxSimilar: options.maxSimilar ?? 10,
      similarWindowMs: options.similarWindowMs ?? 600_000,
      burst: options.burst ?? 25,
      refillMs: options.refillMs ?? 300_000,
      cacheSize: options.cacheSize ?? 4096,
    };
    this.now = options.now ?? (() => Date.now());
    this.similar = new Lru(this.o.cacheSize);
    this.seen = new Lru(this.o.cacheSize);
    this.buckets = new Lru(this.o.cacheSize);
  }

  correlate(target: EventTarget, type: EventType, reason: string, message: string): Correlation {
    const m = target.metadata ?? {};
    const object = `${target.kind}/${m.namespace}/${m.name}/${m.uid ?? ""}`;
    let bucket = this.buckets.get(object);
    if (!bucket) {
      bucket = new TokenBucket(1000 / this.o.refillMs, this.o.burst, this.now);
      this.buckets.set(object, bucket);
    }
    if (!bucket.tryTake()) return { action: "drop" };

    const aggregateKey = `${object}/${type}/${reason}`;
    const t = this.now();
    let sim = this.similar.get(aggregateKey);
    if (!sim || t - sim.since > this.o.similarWindowMs) {
      sim = { messages: new Set(), since: t };
      this.similar.set(aggregateKey, sim);
    }
    sim.messages.add(message);
    const combined = sim.messages.size >= this.o.maxSimilar;
    const text = combined ? `(combined from similar events): ${message}` : message;
    const key = combined ? `${aggregateKey}/*` : `${aggregateKey}/${message}`;
    const before = this.seen.get(key);
    if (before?.name)
      return {
        action: "patch",
        key,
        message: text,
        name: before.name,
        count: before.count + 1,
        firstTimestamp: before.firstTimestamp,
      };
    return { action: "create", key, message: text };
  }

  /** What the apiserver answered: later events with this key are counted on it. */
  written(key: string, name: string, count: number, firstTimestamp: string): void {
    this.seen.set(key, { name, count, firstTimestamp });
  }
}

export interface RecorderOptions extends CorrelatorOptions {
  component: string;
  /** Events waiting to be sent; beyond this they are dropped (with a warning), never a memory leak. */
  maxPending?: number;
  /** Events sent at once. */
  concurrency?: number;
  /**
   * While this says so (the process's queues have urgent work), events wait: they are best effort,
   * and should not take the apiserver from the writes they tell of. One waiting longer than
   * holdMaxMs goes anyway, one at a time, so a long burst delays events but never starves them.
   */
  holdWhile?: () => boolean;
  /** How long an event may be held (default 5000 ms: the work queue's delay for low work while busy). */
  holdMaxMs?: number;
  now?: () => number;
}

export class EventRecorder {
  private readonly instance = hostname();
  private readonly correlator: EventCorrelator;
  private readonly pending: { at: number; send: () => Promise<void> }[] = [];
  private running = 0;
  private droppedSince = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly options: RecorderOptions,
  ) {
    this.correlator = new EventCorrelator(options);
  }

  record(target: EventTarget, type: EventType, reason: string, message: string): void {
    const c = this.correlator.correlate(target, type, reason, message.slice(0, 1024));
    if (c.action === "drop") return;
    if (this.pending.length >= (this.options.maxPending ?? 1000)) {
      if (this.droppedSince++ === 0) log.warn("event queue full; dropping events", { reason });
      return;
    }
    this.pending.push({ at: this.now(), send: () => this.send(target, type, reason, c) });
    this.pump();
  }

  /** Resolves when every event accepted so far was sent (or failed). */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.running > 0) await new Promise((r) => setTimeout(r, 10));
  }

  private retry?: NodeJS.Timeout;

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** Events that may go now: all of them (up to the concurrency) unless held; then only overdue ones, singly. */
  private pump(): void {
    const held = this.options.holdWhile?.() ?? false;
    const overdue = () => this.now() - this.pending[0]!.at >= (this.options.holdMaxMs ?? 5000);
    const limit = held ? 1 : (this.options.concurrency ?? 4);
    while (this.running < limit && this.pending.length > 0 && (!held || overdue())) {
      const job = this.pending.shift()!;
      this.running++;
      void job.send().finally(() => {
        this.running--;
        if (this.pending.length === 0) this.droppedSince = 0;
        this.pump();
      });
    }
    // Held back: look again soon (the hold may end, or the oldest become overdue).
    if (this.pending.length > 0 && this.running < limit && !this.retry)
      this.retry = setTimeout(() => {
        this.retry = undefined;
        this.pump();
      }, 100).unref();
  }

  private async send(
    target: EventTarget,
    type: EventType,
    reason: string,
    c: Exclude<Correlation, { action: "drop" }>,
  ): Promise<void> {
    const m = target.metadata ?? {};
    const ns = m.namespace ?? "default";
    const now = new Date().toISOString();
    try {
      if (c.action === "patch") {
        const patched = await this.client
          .request({
            method: "PATCH",
            path: `${paths.events(ns)}/${c.name}`,
            body: { count: c.count, lastTimestamp: now, message: c.message },
            contentType: "application/merge-patch+json",
          })
          .then(
            () => true,
            (e: unknown) => {
              // The event expired (the apiserver keeps them an hour): write it anew.
              if (isNotFound(e)) return false;
              throw e;
            },
          );
        if (patched) {
          this.correlator.written(c.key, c.name, c.count, c.firstTimestamp);
          return;
        }
      }
      const created = await this.client.request<{ metadata?: { name?: string } }>({
        method: "POST",
        path: paths.events(ns),
        body: {
          apiVersion: "v1",
          kind: "Event",
          metadata: { generateName: `${m.name}.`, namespace: ns },
          involvedObject: {
            apiVersion: target.apiVersion,
            kind: target.kind,
            name: m.name,
            namespace: ns,
            uid: m.uid,
          },
          type,
          reason,
          message: c.message,
          source: { component: this.options.component },
          reportingComponent: this.options.component,
          reportingInstance: this.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
      if (created.metadata?.name) this.correlator.written(c.key, created.metadata.name, 1, now);
    } catch (err) {
      log.warn("could not record event", {
        reason,
        object: `${ns}/${m.name}`,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
}
