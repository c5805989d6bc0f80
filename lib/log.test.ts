import test from "ava";
import { logger } from "./log.js";

// The level is read once, when the module loads: these run at the default level (info) only.
const atInfo = (process.env.LOG_LEVEL ?? "info") === "info";
const infoTest = atInfo ? test : test.skip;

infoTest("a line below the level is dropped before anything formats its fields", (t) => {
  const log = logger("log-test");
  let reads = 0;
  // Nested: winston copies a line's own fields when it makes the line; only formatting reads deeper.
  const fields = {
    nested: {
      get probe() {
        reads++;
        return "x";
      },
    },
  };
  log.debug("not logged", fields);
  log.log("debug", "not logged either", fields);
  t.is(reads, 0, "a debug line's fields were read (formatted) although the level is info");
  t.false(log.isLevelEnabled("debug"));
});

infoTest("a line at the level is still formatted and written", (t) => {
  const log = logger("log-test");
  let reads = 0;
  // Nested: winston copies a line's own fields when it makes the line; only formatting reads deeper.
  const fields = {
    nested: {
      get probe() {
        reads++;
        return "x";
      },
    },
  };
  log.info("logged", fields);
  log.log("warn", "logged too", fields);
  t.true(reads >= 2, `the fields of lines at or above the level were read ${reads} times`);
});
