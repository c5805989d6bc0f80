import type { AuthConfig, ImageSpec } from "../proto.js";
import { checkName } from "../services/validate.js";
import type { Handler } from "./types.js";

export const pullImage: Handler<{ image: ImageSpec | null; auth: AuthConfig | null }> = async (rt, req) => {
  const ref = checkName("image.image", req.image?.image);
  const a = req.auth;
  const auth =
    a && (a.username || a.auth || a.registry_token || a.identity_token)
      ? {
          username: a.username || undefined,
          password: a.password || undefined,
          auth: a.auth || undefined,
          registryToken: a.registry_token || a.identity_token || undefined,
        }
      : undefined;
  const img = await rt.images.pull(ref, auth);
  return { image_ref: img.id };
};
