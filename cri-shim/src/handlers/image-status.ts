import type { ImageSpec } from "../proto.js";
import { checkName } from "../services/validate.js";
import { imageView } from "./views.js";
import type { Handler } from "./types.js";

/** An absent image is not an error: the response simply has no image. */
export const imageStatus: Handler<{ image: ImageSpec | null; verbose: boolean }> = async (rt, req) => {
  const img = await rt.images.get(checkName("image.image", req.image?.image));
  const info: Record<string, string> = {};
  if (img && req.verbose)
    info.info = JSON.stringify({
      kernelPath: img.kernelPath,
      initrdPath: img.initrdPath,
      config: img.config,
    });
  return { image: img ? imageView(img) : null, info };
};
