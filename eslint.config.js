import js from "@eslint/js";
import tseslint from "typescript-eslint";
import superfluid from "./tools/eslint-layers.mjs";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "native/", "charts/", "crds/", "scripts/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "off",
    },
  },
  {
    files: ["**/*.ts"],
    plugins: { superfluid },
    rules: { "superfluid/layers": "error" },
  },
);
