import test from "ava";
import { ALL_CRDS } from "./crds.js";

test("every list of objects in the UnikernelVM schema says how server-side apply merges it", (t) => {
  const unmarked: string[] = [];
  const visit = (node: Record<string, unknown>, path: string) => {
    if (
      node.type === "array" &&
      (node.items as Record<string, unknown>)?.type === "object" &&
      !node["x-kubernetes-list-type"]
    )
      unmarked.push(path);
    for (const [k, v] of Object.entries((node.properties as Record<string, Record<string, unknown>>) ?? {}))
      visit(v, `${path}.${k}`);
    if (node.items) visit(node.items as Record<string, unknown>, `${path}[]`);
  };
  for (const crd of ALL_CRDS)
    visit(crd.spec.versions[0]!.schema.openAPIV3Schema as Record<string, unknown>, crd.spec.names.kind);
  t.deepEqual(unmarked, []);
});
