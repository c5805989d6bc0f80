// A small builder for OpenAPI v3 structural schemas that also carries the TypeScript type of what it
// describes. The CRDs and the API's TypeScript types come from the same expressions, so they cannot
// drift apart: `Infer<typeof x>` is the type, `x.schema` is the schema.

export interface JSONSchemaProps {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  description?: string;
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  items?: JSONSchemaProps;
  additionalProperties?: JSONSchemaProps;
  enum?: readonly (string | number)[];
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  default?: unknown;
  anyOf?: JSONSchemaProps[];
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-map-type"?: "atomic" | "granular";
  "x-kubernetes-validations"?: ValidationRule[];
}

export interface ValidationRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  fieldPath?: string;
  reason?: "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";
}

/** A schema node. `T` is the TypeScript type it describes; `Req` whether its parent requires it. */
export interface Schema<T, Req extends boolean = false> {
  readonly schema: JSONSchemaProps;
  readonly required: Req;
  /** Phantom field: never set, only carries the type. */
  readonly __type?: T;
}

export type Infer<S> = S extends Schema<infer T, boolean> ? T : never;

type Shape = Record<string, Schema<unknown, boolean>>;
type RequiredKeys<P extends Shape> = {
  [K in keyof P]: P[K] extends Schema<unknown, true> ? K : never;
}[keyof P];
type OptionalKeys<P extends Shape> = Exclude<keyof P, RequiredKeys<P>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type InferObject<P extends Shape> = Simplify<
  { [K in RequiredKeys<P>]: Infer<P[K]> } & { [K in OptionalKeys<P>]?: Infer<P[K]> }
>;

function node<T>(schema: JSONSchemaProps): Schema<T, false> {
  return { schema, required: false };
}

type Extra = Omit<JSONSchemaProps, "type" | "properties" | "items" | "required" | "enum">;

export const s = {
  string: (extra: Extra = {}) => node<string>({ type: "string", ...extra }),
  integer: (extra: Extra = {}) => node<number>({ type: "integer", ...extra }),
  boolean: (extra: Extra = {}) => node<boolean>({ type: "boolean", ...extra }),
  enum: <const V extends readonly string[]>(values: V, extra: Extra = {}) =>
    node<V[number]>({ type: "string", enum: values, ...extra }),
  /** A Kubernetes resource.Quantity: an integer or a string like "64Mi". */
  quantity: (extra: Extra = {}) =>
    node<string | number>({
      "x-kubernetes-int-or-string": true,
      anyOf: [{ type: "integer" }, { type: "string" }],
      pattern:
        "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
      ...extra,
    }),
  array: <T>(items: Schema<T, boolean>, extra: Extra = {}) =>
    node<T[]>({ type: "array", items: items.schema, ...extra }),
  /** A list that server-side apply merges by key, like containers by name. */
  listMap: <T>(items: Schema<T, boolean>, keys: string[], extra: Extra = {}) =>
    node<T[]>({
      type: "array",
      items: items.schema,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": keys,
      ...extra,
    }),
  stringMap: (extra: Extra = {}) =>
    node<Record<string, string>>({ type: "object", additionalProperties: { type: "string" }, ...extra }),
  object: <P extends Shape>(props: P, extra: Extra = {}) => {
    const required = Object.keys(props).filter((k) => props[k]?.required);
    const properties: Record<string, JSONSchemaProps> = {};
    for (const [k, v] of Object.entries(props)) properties[k] = v.schema;
    return node<InferObject<P>>({
      type: "object",
      properties,
      ...(required.length ? { required } : {}),
      ...extra,
    });
  },
  /** An object kept as written (for embedded core types too large to restate, like Affinity). */
  opaque: <T>(extra: Extra = {}) =>
    node<T>({ type: "object", "x-kubernetes-preserve-unknown-fields": true, ...extra }),
};

/** Marks a property as required in its parent object. */
export function required<T>(x: Schema<T, boolean>): Schema<T, true> {
  return { schema: x.schema, required: true };
}

/** Adds CEL validation rules to a node. */
export function withRules<T, R extends boolean>(x: Schema<T, R>, ...rules: ValidationRule[]): Schema<T, R> {
  return {
    schema: {
      ...x.schema,
      "x-kubernetes-validations": [...(x.schema["x-kubernetes-validations"] ?? []), ...rules],
    },
    required: x.required,
  };
}

export function describe<T, R extends boolean>(x: Schema<T, R>, description: string): Schema<T, R> {
  return { schema: { ...x.schema, description }, required: x.required };
}
