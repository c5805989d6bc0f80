// Client-side flow control and accounting for the REST client: a token bucket (client-go's QPS and
// burst) and a count of requests by verb and resource, as the apiserver's own metrics name them.

/** A token bucket: `burst` requests at once, then `qps` per second. take() waits for a token, in order. */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Takes a token without waiting; false when none is left. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  take(): Promise<void> {
    // Fast path: a token is there and nobody waits.
    if (this.waiting === 0 && this.tryTake()) return Promise.resolve();
    this.waiting++;
    const turn = this.tail.then(async () => {
      while (!this.tryTake()) {
        const ms = Math.max(1, ((1 - this.tokens) / this.qps) * 1000);
        await new Promise((r) => setTimeout(r, ms));
      }
      this.waiting--;
    });
    this.tail = turn;
    return turn;
  }

  private waiting = 0;

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.qps);
    this.last = t;
  }
}

/** The apiserver's verb and resource for a REST call: ("create", "pods"), ("patch", "unikernelvms/status"). */
export function verbAndResource(
  method: string,
  path: string,
  query?: Record<string, unknown>,
): { verb: string; resource: string } {
  const segs = path.split("?")[0]!.split("/").filter(Boolean);
  // /api/v1/... or /apis/group/version/...
  const rest = segs[0] === "api" ? segs.slice(2) : segs.slice(3);
  const namespaced = rest[0] === "namespaces" && rest.length >= 3;
  const [resource, name, sub] = namespaced ? rest.slice(2) : rest;
  const res = `${resource ?? "?"}${sub ? `/${sub}` : ""}`;
  const watching = query?.watch === true || query?.watch === "true" || query?.watch === 1;
  const verb =
    method === "GET"
      ? watching
        ? "watch"
        : name
          ? "get"
          : "list"
      : method === "POST"
        ? "create"
        : method === "PUT"
          ? "update"
          : method === "PATCH"
            ? "patch"
            : method === "DELETE"
              ? name
                ? "delete"
                : "deletecollection"
              : method.toLowerCase();
  return { verb, resource: res };
}

export class RequestCounter {
  private readonly counts = new Map<string, number>();
  private listeners: ((verb: string, resource: string) => void)[] = [];

  count(method: string, path: string, query?: Record<string, unknown>): void {
    const { verb, resource } = verbAndResource(method, path, query);
    const key = `${verb} ${resource}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    for (const l of this.listeners) l(verb, resource);
  }

  /** Called for every request (a metrics counter). */
  onRequest(listener: (verb: string, resource: string) => void): void {
    this.listeners.push(listener);
  }

  /** {"create pods": 1000, ...}, keys sorted. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }

  get total(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }
}
