import { CriError } from "../errors.js";
import type { ImageSpec } from "../proto.js";
import { collectKernelCache } from "../services/kernel-cache.js";
import { checkName } from "../services/validate.js";
import type { Handler } from "./types.js";

/** Idempotent; refused while a live container runs the image (its kernel may be rebuilt from it). */
export const removeImage: Handler<{ image: ImageSpec | null }> = async (rt, req) => {
  const ref = checkName("image.image", req.image?.image);
  const img = await rt.images.get(ref);
  if (!img) return {};
  const user = rt.ctx.containers.list().find((c) => c.meta.imageId === img.id && c.status.state !== "exited");
  if (user) throw new CriError("FailedPrecondition", `image ${ref} is used by container ${user.meta.id}`);
  await rt.images.remove(img.id);
  // The kernel copy in tmpfs goes with the image (unless an exited container's record still names it).
  await collectKernelCache(rt.ctx);
  return {};
};
