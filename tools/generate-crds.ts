// Writes crds/*.yaml and the chart's copy from the TypeScript source of the API.
// Run with `npm run build:crds`; the drift test fails when the files and the source disagree.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { REPO_ROOT } from "../lib/paths.js";
import { ALL_CRDS, crdFileName, type CustomResourceDefinition } from "../api/crds.js";
import { stringify } from "yaml";

export const CRD_DIRS = [join(REPO_ROOT, "crds"), join(REPO_ROOT, "charts", "superfluid", "crds")];

export function renderCRD(c: CustomResourceDefinition): string {
  return "# Generated from api/ by `npm run build:crds`. Do not edit.\n" + stringify(c, { lineWidth: 0 });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const dir of CRD_DIRS) {
    mkdirSync(dir, { recursive: true });
    for (const c of ALL_CRDS) writeFileSync(join(dir, crdFileName(c)), renderCRD(c));
  }
  console.log(`wrote ${ALL_CRDS.length} CRDs to ${CRD_DIRS.join(", ")}`);
}
