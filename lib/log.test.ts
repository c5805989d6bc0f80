import test from "ava";
import { logger } from "./log.js";

// The level is read once, when the module loads: these run at the default level (info) only.
const atInfo = (process.env.LOG_LEVEL ?? "info") === "info";
const infoTest = atInfo ? test : test.skip;

/** Fields that count how often a formatter read them. Nested: winston copies a line's own fields
 *  when it makes the line; only formatting reads deeper. */
function probe() {
  const seen = { reads: 0 };
  const fields = {
    nested: {
      get probe() {
        seen.reads++;
        return "x";
      },
    },
  };
  return { fields, seen };
}

infoTest("a line below the level is dropped before anything formats its fields", (t) => {
  const log = logger("log-test");
  const { fields, seen } = probe();
  log.debug("not logged", fields);
  log.log("debug", "not logged either", fields);
  t.is(seen.reads, 0, "a debug line's fields were read (formatted) although the level is info");
  t.false(log.isLevelEnabled("debug"));
});

infoTest("a line at the level is still formatted and written", (t) => {
  const log = logger("log-test");
  const { fields, seen } = probe();
  log.info("logged", fields);
  log.log("warn", "logged too", fields);
  t.true(seen.reads >= 2, `the fields of lines at or above the level were read ${seen.reads} times`);
});
