import type { ImageSpec } from "../proto.js";
import { imageView } from "./views.js";
import type { Handler } from "./types.js";

export const listImages: Handler<{ filter: { image: ImageSpec | null } | null }> = async (rt, req) => {
  const wanted = req.filter?.image?.image;
  if (wanted) {
    const img = await rt.images.get(wanted);
    return { images: img ? [imageView(img)] : [] };
  }
  return { images: (await rt.images.list()).map(imageView) };
};
