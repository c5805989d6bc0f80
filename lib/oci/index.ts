// lib/oci: the public API. The CRI shim's ImageService and tools/image.ts import from here only.
//
//   const store = new ImageStore(root, { limits? });
//   await store.pull(ref, { auth?, caFile?, insecureSkipTLSVerify?, plainHttp?, limits? }) -> ImageRecord
//   await store.get(refOrDigest) -> ImageRecord | undefined     (tag ref, repo@digest, manifest digest, image id)
//   await store.list() -> ImageRecord[]
//   await store.remove(refOrDigest) -> boolean                  (untags, or removes the image + GC)
//   await store.fsInfo() -> ImageFsInfo
//   buildUnikernelImage(...) / writeOciLayout(...) / readOciLayout(...) / pushImage(...)   (tools)
//   buildContainerImage(layers, config) -> BuiltContainerImage   (npm run images: the project's own images)
// Errors are OciError (with a code for gRPC mapping) or ImageFormatError (bad annotations).
export { ImageStore, type ImageStoreOptions } from "./store.js";
export {
  DEFAULT_PULL_LIMITS,
  OciError,
  type ImageFsInfo,
  type ImageRecord,
  type OciErrorCode,
  type PullLimits,
  type PullOptions,
  type RegistryAuth,
  type RegistryOptions,
} from "./types.js";
export { parseReference, formatReference, type ImageReference } from "./reference.js";
export { RegistryClient } from "./registry-client.js";
export { inspectImage, type ImageInspection } from "./resolve.js";
export { MEDIA_TYPES } from "./media-types.js";
export {
  buildUnikernelImage,
  writeOciLayout,
  readOciLayout,
  pushImage,
  type BuiltImage,
  type BuildOptions,
} from "./build.js";
export {
  buildContainerImage,
  buildLayer,
  imageSizeBytes,
  type BuiltContainerImage,
  type ContainerConfig,
} from "./container-image.js";
export { writeTar, type TarWriteEntry } from "./tar.js";
export { ImageFormatError, type UnikernelImageConfig } from "../../api/image-format.js";
