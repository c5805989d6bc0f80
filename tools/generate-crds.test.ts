// The generated CRDs (crds/ and the chart's copy) must match the TypeScript source in api/.
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ALL_CRDS, crdFileName } from "../api/crds.js";
import { CRD_DIRS, renderCRD } from "./generate-crds.js";

for (const dir of CRD_DIRS) {
  for (const crd of ALL_CRDS) {
    test(`${dir.split("/").slice(-2).join("/")}/${crdFileName(crd)} matches the TypeScript source`, (t) => {
      const onDisk = readFileSync(join(dir, crdFileName(crd)), "utf8");
      t.is(onDisk, renderCRD(crd), "run `npm run build:crds` and commit the result");
    });
  }
}
