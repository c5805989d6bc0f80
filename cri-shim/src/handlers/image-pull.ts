import type { AuthConfig, ImageSpec } from "../proto.js";
import { pullAuthOf } from "../services/image-backend.js";
import { checkName } from "../services/validate.js";
import type { Handler } from "./types.js";

export const pullImage: Handler<{ image: ImageSpec | null; auth: AuthConfig | null }> = async (rt, req) => {
  const ref = checkName("image.image", req.image?.image);
  const img = await rt.images.pull(ref, pullAuthOf(req.auth));
  return { image_ref: img.id };
};
