// Reading the console output of `hello` (native/unikernels/hello): the lines it prints and what
// they say. Shared by the tests that boot it.

export interface HelloLog {
  text: string;
  /** Command-line words that are not KEY=VALUE, in order. */
  args: string[];
  /** KEY=VALUE words of the command line, in order. */
  env: string[];
  /** How many times it printed its ready line (once per boot). */
  readyCount: number;
  /** Boot time the last ready line reports (first instruction to ready), in ms. */
  readyMs: number | undefined;
  /** The guest's memory report line. */
  memoryLine: string | undefined;
  /** Every tick number in order, across boots. */
  ticks: number[];
  /** Tick numbers after the last ready line. */
  ticksAfterLastReady: number[];
  /** Tick numbers of each "suspending at tick N" / "resumed at tick N (...)", in order. */
  suspendedAt: number[];
  resumedAt: number[];
  /** Resumes in a restored domain (xl restore) and cancelled suspends (xl save -c). */
  restoredCount: number;
  cancelledCount: number;
}

const READY = /^hello: ready in (\d+\.\d+) ms \(args=(\d+) env=(\d+)\)$/;

export function parseHelloLog(text: string): HelloLog {
  const log: HelloLog = {
    text,
    args: [],
    env: [],
    readyCount: 0,
    readyMs: undefined,
    memoryLine: undefined,
    ticks: [],
    ticksAfterLastReady: [],
    suspendedAt: [],
    resumedAt: [],
    restoredCount: 0,
    cancelledCount: 0,
  };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    let m: RegExpExecArray | null;
    if ((m = /^hello: tick (\d+)$/.exec(line))) {
      log.ticks.push(Number(m[1]));
      log.ticksAfterLastReady.push(Number(m[1]));
    } else if ((m = READY.exec(line))) {
      log.readyCount++;
      log.readyMs = Number(m[1]);
      log.ticksAfterLastReady = [];
    } else if ((m = /^hello: cmdline /.exec(line))) {
      // A new boot: its arguments replace those of the previous one.
      log.args = [];
      log.env = [];
    } else if ((m = /^hello: arg\[\d+\] (.*)$/.exec(line))) {
      log.args.push(m[1]!);
    } else if ((m = /^hello: env (.*)$/.exec(line))) {
      log.env.push(m[1]!);
    } else if (line.startsWith("hello: memory ")) {
      log.memoryLine = line.slice("hello: ".length);
    } else if ((m = /^hello: suspending at tick (\d+)$/.exec(line))) {
      log.suspendedAt.push(Number(m[1]));
    } else if ((m = /^hello: resumed at tick (\d+) \((restored domain|suspend cancelled)\)$/.exec(line))) {
      log.resumedAt.push(Number(m[1]));
      if (m[2] === "restored domain") log.restoredCount++;
      else log.cancelledCount++;
    }
  }
  return log;
}
