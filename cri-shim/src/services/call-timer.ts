// Where a CRI call's time went, for its log line: marks in call order, each the milliseconds since
// the previous mark (or the call's start), and the whole call's.

export class CallTimer {
  private readonly start = performance.now();
  private last = this.start;
  private readonly marks: Record<string, number> = {};

  /** The time since the previous mark, logged as `${step}Ms`. */
  mark(step: string): void {
    const now = performance.now();
    this.marks[`${step}Ms`] = Math.round(now - this.last);
    this.last = now;
  }

  /** `ms` (the whole call so far) and every mark. */
  fields(): Record<string, number> {
    return { ms: Math.round(performance.now() - this.start), ...this.marks };
  }
}
