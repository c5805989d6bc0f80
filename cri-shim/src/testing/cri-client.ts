// A promise-based CRI client over a unix socket, for tests and tools (speaks our proto, i.e. CRI v1).
import * as grpc from "@grpc/grpc-js";
import { loadCriServices } from "../proto.js";

export type Call = <Res = Record<string, unknown>>(
  method: string,
  req?: Record<string, unknown>,
) => Promise<Res>;

export interface CriClient {
  runtime: Call;
  image: Call;
  /** A server-streaming runtime call (GetContainerEvents): its messages, decoded. */
  runtimeStream<Res = Record<string, unknown>>(
    method: string,
    req?: Record<string, unknown>,
  ): grpc.ClientReadableStream<Res>;
  close(): void;
}

export function connectCri(socketPath: string): CriClient {
  const { RuntimeClient, ImageClient } = loadCriServices();
  const rt = new RuntimeClient(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const img = new ImageClient(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const caller =
    (client: grpc.Client): Call =>
    (method, req = {}) =>
      new Promise((resolve, reject) => {
        const fn = (
          client as unknown as Record<
            string,
            (r: unknown, cb: (e: grpc.ServiceError | null, v: unknown) => void) => void
          >
        )[method];
        if (!fn) {
          reject(new Error(`no method ${method}`));
          return;
        }
        fn.call(client, req, (err, value) => (err ? reject(err) : resolve(value as never)));
      });
  return {
    runtime: caller(rt),
    image: caller(img),
    runtimeStream: <Res>(method: string, req: Record<string, unknown> = {}) => {
      const fn = (
        rt as unknown as Record<string, ((r: unknown) => grpc.ClientReadableStream<Res>) | undefined>
      )[method];
      if (!fn) throw new Error(`no method ${method}`);
      return fn.call(rt, req);
    },
    close: () => {
      rt.close();
      img.close();
    },
  };
}
