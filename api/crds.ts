// Builds the CustomResourceDefinitions from the schema builder's nodes.
import type { JSONSchemaProps } from "./schema-builder.js";
import { GROUP, VERSION } from "./v1alpha1/common.js";
import {
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  migrationSpecSchema,
  migrationStatusSchema,
} from "./v1alpha1/migration.js";
import {
  UNIKERNELVM_KIND,
  UNIKERNELVM_PLURAL,
  unikernelVMSpecSchema,
  unikernelVMNameSchema,
  unikernelVMStatusSchema,
} from "./v1alpha1/unikernelvm.js";

export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "date" | "number" | "boolean";
  jsonPath: string;
  priority?: number;
  description?: string;
}

export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: "Namespaced";
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: JSONSchemaProps };
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      selectableFields?: { jsonPath: string }[];
    }[];
  };
}

function crd(opts: {
  kind: string;
  plural: string;
  shortName: string;
  description: string;
  spec: JSONSchemaProps;
  status: JSONSchemaProps;
  columns: PrinterColumn[];
  /**
   * What metadata.name must be, beyond the apiserver's own rule (a DNS-1123 subdomain): the schema
   * of the one metadata field a CRD may restrict. Plain OpenAPI, not CEL: a CEL rule on the whole
   * object (the only place that sees the name) costs every create about an eighth of its apiserver
   * CPU (bench:crd-cost).
   */
  name?: JSONSchemaProps;
  /** Fields a list or watch can select on (?fieldSelector=), besides metadata.name and namespace. */
  selectableFields?: string[];
}): CustomResourceDefinition {
  const singular = opts.kind.toLowerCase();
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${opts.plural}.${GROUP}`, labels: { "app.kubernetes.io/part-of": "superfluid" } },
    spec: {
      group: GROUP,
      names: {
        kind: opts.kind,
        listKind: `${opts.kind}List`,
        plural: opts.plural,
        singular,
        shortNames: [opts.shortName],
        categories: ["superfluid"],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: "object",
              description: opts.description,
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: opts.name
                  ? { type: "object", properties: { name: opts.name } }
                  : { type: "object" },
                spec: opts.spec,
                status: opts.status,
              },
            },
          },
          subresources: { status: {} },
          additionalPrinterColumns: opts.columns,
          ...(opts.selectableFields
            ? { selectableFields: opts.selectableFields.map((jsonPath) => ({ jsonPath })) }
            : {}),
        },
      ],
    },
  };
}

export const unikernelVMCRD = crd({
  kind: UNIKERNELVM_KIND,
  plural: UNIKERNELVM_PLURAL,
  shortName: "uvm",
  description: "A unikernel that runs as a pod on a Xen node.",
  spec: unikernelVMSpecSchema.schema,
  status: unikernelVMStatusSchema.schema,
  name: unikernelVMNameSchema,
  columns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Node", type: "string", jsonPath: ".status.nodeName" },
    { name: "IP", type: "string", jsonPath: ".status.ip" },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    { name: "Image", type: "string", jsonPath: ".spec.image", priority: 1 },
    { name: "Memory", type: "string", jsonPath: ".spec.memory", priority: 1 },
    { name: "Domain", type: "integer", jsonPath: ".status.domainId", priority: 1 },
    { name: "Boot-ms", type: "integer", jsonPath: ".status.bootTimeMilliseconds", priority: 1 },
  ],
  // Each node agent lists and watches only the VMs placed on its node (status.nodeName=<node>).
  selectableFields: [".status.nodeName"],
});

export const migrationCRD = crd({
  kind: MIGRATION_KIND,
  plural: MIGRATION_PLURAL,
  shortName: "uvmm",
  description: "Moves a running UnikernelVM to another node.",
  spec: migrationSpecSchema.schema,
  status: migrationStatusSchema.schema,
  columns: [
    { name: "VM", type: "string", jsonPath: ".spec.vmName" },
    { name: "Mode", type: "string", jsonPath: ".spec.mode" },
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Source", type: "string", jsonPath: ".status.sourceNode" },
    { name: "Target", type: "string", jsonPath: ".status.targetNode" },
    { name: "Downtime-ms", type: "integer", jsonPath: ".status.downtimeMilliseconds" },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
});

export const ALL_CRDS = [unikernelVMCRD, migrationCRD];

/** The file name each CRD is written to, in crds/ and in the chart's crds/. */
export function crdFileName(c: CustomResourceDefinition): string {
  return `${c.spec.group}_${c.spec.names.plural}.yaml`;
}
