// What a UnikernelVM's args and env values may be, once: the CRD checks it with CEL (RE2) and the
// operator and the shim check it again in TypeScript. Each arg and each KEY=VALUE reaches the guest
// verbatim as one word of the kernel command line, so a word must not split (white space), must not
// start a quoted string the guest's parser would join (quotes, backslash) and must not carry control
// characters into the console or a log. Nor may it set what the shim sets itself.

/** Keys the shim puts on every guest's command line; a tenant's word must not set or shadow them. */
export const RESERVED_CMDLINE_KEYS = ["ip", "gw", "hostname"] as const;

/** Characters no word may hold, as an RE2 character class (CEL's `matches`). */
export const CMDLINE_FORBIDDEN_RE2 = `[\\s\\p{Z}\\p{Cc}"'\\\\]`;
const FORBIDDEN = /[\s\p{Z}\p{Cc}"'\\]/u;

/** The RE2 expression matching a word whose key (before the first "=") is reserved. */
export const RESERVED_KEY_RE2 = `^(${RESERVED_CMDLINE_KEYS.join("|")})(=|$)`;
const RESERVED = new RegExp(RESERVED_KEY_RE2);

/** Why `word` sets a key the shim sets itself, or undefined. */
export function reservedKeyProblem(word: string): string | undefined {
  if (RESERVED.test(word))
    return `must not set ${RESERVED_CMDLINE_KEYS.map((k) => `${k}=`).join(", ")}: the shim sets them itself`;
  return undefined;
}

/** Why `word` cannot go on the command line as one word, or undefined when it can. */
export function cmdlineWordProblem(word: string): string | undefined {
  if (word === "") return "is empty";
  if (FORBIDDEN.test(word))
    return "must be one word: no white space, quotes, backslashes or control characters";
  return reservedKeyProblem(word);
}

/** Why an env variable name cannot be a command-line key, or undefined. */
export function envNameProblem(name: string): string | undefined {
  if ((RESERVED_CMDLINE_KEYS as readonly string[]).includes(name))
    return `is reserved: the shim sets ${name}= itself`;
  return undefined;
}

/** Why an env value cannot follow NAME= as one word, or undefined (an empty value is fine). */
export function envValueProblem(value: string): string | undefined {
  if (FORBIDDEN.test(value))
    return "must be one word: no white space, quotes, backslashes or control characters";
  return undefined;
}
