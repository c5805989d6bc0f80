// One logger for every process in the repo. JSON lines when LOG_FORMAT=json (production, the chart
// sets it), readable lines in a terminal otherwise; level from LOG_LEVEL.
import winston from "winston";

export type Logger = winston.Logger;

const level = process.env.LOG_LEVEL ?? "info";
const json =
  process.env.LOG_FORMAT === "json" || (!process.stderr.isTTY && process.env.LOG_FORMAT !== "text");

const root = winston.createLogger({
  level,
  format: json
    ? winston.format.combine(
        winston.format.timestamp(),
        winston.format.errors({ stack: true }),
        winston.format.json(),
      )
    : winston.format.combine(
        winston.format.timestamp({ format: "HH:mm:ss.SSS" }),
        winston.format.errors({ stack: true }),
        winston.format.colorize(),
        winston.format.printf(({ timestamp, level: lvl, message, component, ...rest }) => {
          const fields = Object.keys(rest).length ? " " + JSON.stringify(rest) : "";
          return `${String(timestamp)} ${lvl} [${String(component ?? "superfluid")}] ${String(message)}${fields}`;
        }),
      ),
  // Logs go to stderr so that stdout stays free for command output (CLI tools, crictl-like output).
  transports: [
    new winston.transports.Console({
      stderrLevels: ["error", "warn", "info", "http", "verbose", "debug", "silly"],
    }),
  ],
});

// winston formats every line (timestamp, JSON) before its transport drops the levels it does not
// log: a dom0 shim at info level spent ~4 % of its event loop formatting debug lines it then threw
// away (a debug line per CRI list call, several a second). Lines below the level stop here, before
// any formatting. Child loggers write through the root, so this covers them all.
const writeLine = root.write.bind(root);
root.write = ((info: winston.LogEntry, ...rest: unknown[]) =>
  typeof info?.level === "string" && !root.isLevelEnabled(info.level)
    ? true
    : (writeLine as (...a: unknown[]) => boolean)(info, ...rest)) as typeof root.write;

/** A child logger that tags every line with the component that wrote it. */
export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  return root.child({ component, ...fields });
}
