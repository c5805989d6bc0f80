// A persisted map of records, each split into immutable metadata (fixed when the object is created)
// and mutable status (changed only through update(fn)). Every change is written atomically (temp file,
// fsync, rename) before the caller sees it, so after a crash the disk holds either the old or the new
// record, never half of one. Updates to one id are serialized; readers get frozen snapshots.
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { logger } from "../../../lib/log.js";
import { CriError } from "../errors.js";

export interface Entry<M, S> {
  readonly meta: Readonly<M>;
  readonly status: Readonly<S>;
}

/** A committed change: `before` absent for a create, `after` absent for a delete. */
export interface Change<M, S> {
  id: string;
  before?: Entry<M, S>;
  after?: Entry<M, S>;
}

const ID_PATTERN = /^[0-9a-f]{64}$/;

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

export class Store<M extends { id: string }, S> {
  private readonly entries = new Map<string, Entry<M, S>>();
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Bumped by every change of the entries: views built from them are current while it holds. */
  generation = 0;
  private readonly log;
  private readonly watchers = new Set<(change: Change<M, S>) => void>();

  constructor(
    readonly dir: string,
    readonly kind: string,
  ) {
    this.log = logger("cri-store", { kind });
  }

  /** Reads every record from disk; leftover temp files of an interrupted write are removed. */
  async load(): Promise<Entry<M, S>[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.includes(".tmp-")) {
        await rm(path, { force: true });
        continue;
      }
      const id = name.replace(/\.json$/, "");
      if (!name.endsWith(".json") || !ID_PATTERN.test(id)) continue;
      try {
        const parsed = JSON.parse(await readFile(path, "utf8")) as { meta: M; status: S };
        if (parsed.meta?.id !== id) throw new Error("id does not match file name");
        this.generation++;
        this.entries.set(id, deepFreeze({ meta: parsed.meta, status: parsed.status }));
      } catch (err) {
        this.log.error("unreadable record left aside", { path, err: String(err) });
        await rename(path, `${path}.corrupt`).catch(() => undefined);
      }
    }
    return this.list();
  }

  get(id: string): Entry<M, S> | undefined {
    return this.entries.get(id);
  }

  /** Full id or a unique prefix of one (crictl users type prefixes). */
  resolve(idOrPrefix: string): Entry<M, S> | undefined {
    const exact = this.entries.get(idOrPrefix);
    if (exact || idOrPrefix.length < 4 || !/^[0-9a-f]+$/.test(idOrPrefix)) return exact;
    const matches = [...this.entries.keys()].filter((k) => k.startsWith(idOrPrefix));
    if (matches.length > 1)
      throw new CriError("InvalidArgument", `${this.kind} id prefix ${idOrPrefix} is ambiguous`);
    return matches[0] === undefined ? undefined : this.entries.get(matches[0]);
  }

  list(): Entry<M, S>[] {
    return [...this.entries.values()];
  }

  /**
   * Calls fn after every change is on disk and visible to readers, in the order of the changes of
   * one id. Not for records read back by load(). Returns the function that stops the calls.
   */
  watch(fn: (change: Change<M, S>) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  private committed(change: Change<M, S>): void {
    this.generation++;
    if (change.after) this.entries.set(change.id, change.after);
    else this.entries.delete(change.id);
    for (const fn of this.watchers) {
      try {
        fn(change);
      } catch (err) {
        this.log.error("store watcher failed", { id: change.id, err: String(err) });
      }
    }
  }

  async create(meta: M, status: S): Promise<Entry<M, S>> {
    if (!ID_PATTERN.test(meta.id)) throw new CriError("Internal", `bad ${this.kind} id ${meta.id}`);
    return this.serialized(meta.id, async () => {
      if (this.entries.has(meta.id))
        throw new CriError("AlreadyExists", `${this.kind} ${meta.id} already exists`);
      const entry = deepFreeze({ meta: structuredClone(meta), status: structuredClone(status) });
      await this.write(entry);
      this.committed({ id: meta.id, after: entry });
      return entry;
    });
  }

  /** Applies fn to a copy of the current status and persists the result. */
  async update(id: string, fn: (status: S, meta: Readonly<M>) => S | void): Promise<Entry<M, S>> {
    return this.serialized(id, async () => {
      const current = this.entries.get(id);
      if (!current) throw new CriError("NotFound", `${this.kind} ${id} not found`);
      const draft = structuredClone(current.status) as S;
      const next = fn(draft, current.meta) ?? draft;
      const entry = deepFreeze({ meta: current.meta, status: next });
      await this.write(entry);
      this.committed({ id, before: current, after: entry });
      return entry;
    });
  }

  async delete(id: string): Promise<void> {
    await this.serialized(id, async () => {
      const before = this.entries.get(id);
      await rm(this.pathOf(id), { force: true });
      if (before) this.committed({ id, before });
      else this.generation++;
    });
  }

  private pathOf(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  private async write(entry: Entry<M, S>): Promise<void> {
    const path = this.pathOf(entry.meta.id);
    const tmp = `${path}.tmp-${randomBytes(4).toString("hex")}`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(JSON.stringify(entry));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  private serialized<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(id) ?? Promise.resolve();
    const run = previous.then(work, work);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(id, settled);
    void settled.then(() => {
      if (this.queues.get(id) === settled) this.queues.delete(id);
    });
    return run;
  }
}
