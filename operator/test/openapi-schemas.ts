// kubeconform fetches its schemas from GitHub by default; we have no network. This writes them
// from the real apiserver's /openapi/v2 instead (built-in kinds and our CRDs alike), in kubeconform's
// file naming, made strict the way kubeconform's own "-strict" schemas are: objects with declared
// properties allow no others.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

type Schema = Record<string, unknown>;

interface OpenAPIv2 {
  definitions: Record<
    string,
    Schema & { "x-kubernetes-group-version-kind"?: { group: string; version: string; kind: string }[] }
  >;
}

function strictify(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strictify);
  if (node === null || typeof node !== "object") return node;
  const s: Schema = {};
  for (const [k, v] of Object.entries(node as Schema)) s[k] = strictify(v);
  if (s.format === "int-or-string") {
    delete s.type;
    delete s.format;
    s.oneOf = [{ type: "string" }, { type: "integer" }];
  }
  if (
    s.properties &&
    s.additionalProperties === undefined &&
    s["x-kubernetes-preserve-unknown-fields"] !== true
  )
    s.additionalProperties = false;
  return s;
}

/** The file kubeconform looks for, relative to the -schema-location directory. */
export function schemaFileName(kind: string, group: string, version: string): string {
  const suffix = group ? `-${group.split(".")[0]!.toLowerCase()}-${version}` : `-${version}`;
  return `${kind.toLowerCase()}${suffix}.json`;
}

/** Writes one schema file per kind in `kinds` (all kinds when omitted); returns the files written. */
export function writeKubeconformSchemas(openapi: OpenAPIv2, dir: string, kinds?: Set<string>): string[] {
  mkdirSync(dir, { recursive: true });
  const definitions = strictify(openapi.definitions) as Schema;
  const written: string[] = [];
  for (const [name, def] of Object.entries(openapi.definitions)) {
    for (const gvk of def["x-kubernetes-group-version-kind"] ?? []) {
      if (kinds && !kinds.has(gvk.kind)) continue;
      const file = join(dir, schemaFileName(gvk.kind, gvk.group, gvk.version));
      writeFileSync(file, JSON.stringify({ $ref: `#/definitions/${name}`, definitions }));
      written.push(file);
    }
  }
  return written;
}
