import test from "ava";
import { unikernelVMCRD } from "../api/crds.js";
import type { JSONSchemaProps } from "../api/schema-builder.js";
import { crdVariant } from "./crd-variants.js";

/** Every schema node of the CRD's one version, with its path. */
function nodes(s: JSONSchemaProps, path = ""): [string, JSONSchemaProps][] {
  return [
    [path, s],
    ...Object.entries(s.properties ?? {}).flatMap(([k, v]) => nodes(v, `${path}.${k}`)),
    ...(s.items ? nodes(s.items, `${path}[]`) : []),
    ...(s.additionalProperties ? nodes(s.additionalProperties, `${path}{}`) : []),
    ...(s.anyOf ?? []).flatMap((v, i) => nodes(v, `${path}|${i}`)),
  ];
}
const schemaOf = (v: ReturnType<typeof crdVariant>) => v.spec.versions[0]!.schema.openAPIV3Schema;
const rulesAt = (s: JSONSchemaProps) => nodes(s).filter(([, n]) => n["x-kubernetes-validations"]?.length);
const defaultsAt = (s: JSONSchemaProps) =>
  nodes(s)
    .filter(([, n]) => n.default !== undefined)
    .map(([p]) => p);

test("the shipped variant is the CRD itself, and a copy", (t) => {
  const shipped = crdVariant(unikernelVMCRD, "shipped");
  t.deepEqual(shipped, unikernelVMCRD);
  t.not(shipped, unikernelVMCRD);
  // The CRD has what the other variants take out.
  t.true(rulesAt(schemaOf(shipped)).length >= 5);
  t.true(defaultsAt(schemaOf(shipped)).length >= 5);
});

test("noCelRules drops every CEL rule and keeps every default", (t) => {
  const v = crdVariant(unikernelVMCRD, "noCelRules");
  t.deepEqual(rulesAt(schemaOf(v)), []);
  t.deepEqual(defaultsAt(schemaOf(v)), defaultsAt(schemaOf(unikernelVMCRD)));
  // The original is untouched.
  t.true(rulesAt(schemaOf(unikernelVMCRD)).length >= 5);
});

test("noDefaults drops every default but the list-map keys', and keeps every rule", (t) => {
  const v = crdVariant(unikernelVMCRD, "noDefaults");
  t.deepEqual(defaultsAt(schemaOf(v)), [".spec.ports[].protocol"]);
  t.is(rulesAt(schemaOf(v)).length, rulesAt(schemaOf(unikernelVMCRD)).length);
});

test("neither has no rule and no default but the list-map keys'", (t) => {
  const v = crdVariant(unikernelVMCRD, "neither");
  t.deepEqual(rulesAt(schemaOf(v)), []);
  t.deepEqual(defaultsAt(schemaOf(v)), [".spec.ports[].protocol"]);
  // Everything else stays: the image's pattern, the enums.
  t.is(
    schemaOf(v).properties!.spec!.properties!.image!.pattern,
    schemaOf(unikernelVMCRD).properties!.spec!.properties!.image!.pattern,
  );
  t.deepEqual(schemaOf(v).properties!.spec!.properties!.guestType!.enum, ["pv", "pvh"]);
});
