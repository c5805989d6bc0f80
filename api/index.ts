// The contract between the operator and the node: API types, CRDs, annotation keys.
export * from "./v1alpha1/common.js";
export * from "./v1alpha1/unikernelvm.js";
export * from "./v1alpha1/migration.js";
export * from "./v1alpha1/conditions.js";
export * from "./annotations.js";
export * from "./cmdline.js";
export * from "./quantity.js";
