// The one place where failures become gRPC status codes. Services throw CriError with the code the
// CRI caller should see; anything else is classified here (hypervisor and annotation errors) or
// becomes INTERNAL with its message.
import * as grpc from "@grpc/grpc-js";
import { AnnotationError } from "../../api/annotations.js";
import { HypervisorError } from "./hypervisor/types.js";

export type CriErrorCode =
  | "NotFound"
  | "InvalidArgument"
  | "AlreadyExists"
  | "ResourceExhausted"
  | "FailedPrecondition"
  | "Unimplemented"
  | "Internal";

const GRPC_CODES: Record<CriErrorCode, grpc.status> = {
  NotFound: grpc.status.NOT_FOUND,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  ResourceExhausted: grpc.status.RESOURCE_EXHAUSTED,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  Unimplemented: grpc.status.UNIMPLEMENTED,
  Internal: grpc.status.INTERNAL,
};

export class CriError extends Error {
  constructor(
    readonly code: CriErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "CriError";
  }
}

/** A call the fallback runtime (containerd) failed or could not take: its own code, its endpoint named. */
export class FallbackError extends Error {
  constructor(
    readonly grpcCode: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = "FallbackError";
  }
}

export const notFound = (what: string, id: string): CriError =>
  new CriError("NotFound", `${what} ${JSON.stringify(id.slice(0, 80))} not found`);
export const invalid = (message: string): CriError => new CriError("InvalidArgument", message);

export function toGrpcStatus(err: unknown): { code: grpc.status; details: string } {
  if (err instanceof CriError) return { code: GRPC_CODES[err.code], details: err.message };
  if (err instanceof FallbackError) return { code: err.grpcCode, details: err.message };
  if (err instanceof AnnotationError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof HypervisorError) {
    const code = {
      NotFound: grpc.status.NOT_FOUND,
      OutOfMemory: grpc.status.RESOURCE_EXHAUSTED,
      InvalidArgument: grpc.status.INVALID_ARGUMENT,
      Failed: grpc.status.INTERNAL,
    }[err.code];
    return { code, details: `hypervisor: ${err.message}` };
  }
  const oci = ociCode(err);
  if (oci)
    return {
      code: OCI_CODES[oci] ?? grpc.status.FAILED_PRECONDITION,
      details: `image: ${(err as Error).message}`,
    };
  return { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}

// lib/oci's OciError, recognised by shape so the error table does not pull in the registry client.
const OCI_CODES: Record<string, grpc.status> = {
  InvalidReference: grpc.status.INVALID_ARGUMENT,
  Unauthorized: grpc.status.UNAUTHENTICATED,
  NotFound: grpc.status.NOT_FOUND,
  TooLarge: grpc.status.RESOURCE_EXHAUSTED,
  Registry: grpc.status.UNAVAILABLE,
  Network: grpc.status.UNAVAILABLE,
  // DigestMismatch, UnsupportedMediaType, UnsafeLayer, InvalidImage: the image itself is unusable.
};

function ociCode(err: unknown): string | undefined {
  if (!(err instanceof Error) || err.name !== "OciError") return undefined;
  const code = (err as Error & { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}
