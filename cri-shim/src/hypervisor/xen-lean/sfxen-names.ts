// libsfxen's names, apart from its koffi bindings, so installers, image builders and tests can use
// them without loading koffi: where the library lives and how a shell is recognised.
import { join } from "node:path";
import { REPO_ROOT } from "../../../../lib/paths.js";

/** Where `make -C native` puts libsfxen.so, under the repository (or an install's REPO_ROOT layout). */
export const SFXEN_LIB_RELATIVE = "native/build/libsfxen/libsfxen.so";
export const SFXEN_LIB_PATH = process.env.SUPERFLUID_SFXEN_LIB ?? join(REPO_ROOT, SFXEN_LIB_RELATIVE);
/** The uuid prefix of a shell (its Xen handle starts with the bytes "sf-shell"); see sfxen.h. */
export const SHELL_UUID_PREFIX = "73662d73-6865-6c6c-";
