// The UnikernelVM CRD with parts of its validation taken out, for bench/crd-cost.ts: what each
// part costs the apiserver per create. None of these is ever served to users.
import type { CustomResourceDefinition } from "../api/crds.js";
import type { JSONSchemaProps } from "../api/schema-builder.js";

export const CRD_VARIANTS = ["shipped", "noCelRules", "noDefaults", "neither"] as const;
export type CrdVariant = (typeof CRD_VARIANTS)[number];

interface Strip {
  rules: boolean;
  defaults: boolean;
}

/** Strips `node` and what is under it; `keys` are the list-map keys among its properties. */
function strip(node: JSONSchemaProps, what: Strip, keys: readonly string[] = [], isKey = false): void {
  if (what.rules) delete node["x-kubernetes-validations"];
  // A list-map's key fields keep their defaults: the apiserver refuses the CRD otherwise.
  if (what.defaults && !isKey) delete node.default;
  for (const [name, child] of Object.entries(node.properties ?? {}))
    strip(child, what, [], keys.includes(name));
  if (node.items) strip(node.items, what, node["x-kubernetes-list-map-keys"] ?? []);
  if (node.additionalProperties) strip(node.additionalProperties, what);
  for (const alt of node.anyOf ?? []) strip(alt, what);
}

/** A copy of `crd` with its CEL rules, its schema defaults (but list-map keys'), or both removed. */
export function crdVariant(crd: CustomResourceDefinition, variant: CrdVariant): CustomResourceDefinition {
  const copy = structuredClone(crd);
  const what: Strip = {
    rules: variant === "noCelRules" || variant === "neither",
    defaults: variant === "noDefaults" || variant === "neither",
  };
  for (const version of copy.spec.versions) strip(version.schema.openAPIV3Schema, what);
  return copy;
}
