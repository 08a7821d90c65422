import * as grpc from '@grpc/grpc-js';
import type { Upstream } from './forwarded-methods';

const identity = (b: Buffer) => b;

/** What a forwarded call carries besides its message. */
export interface ForwardOptions {
  /** The caller's `authorization` header, passed on unchanged. */
  authorization?: string;
  /** The browser's `Origin`, passed on so the service checks a widget token's binding too. */
  origin?: string;
  /** W3C trace context of the caller, when it sent one. */
  traceparent?: string;
  deadline: Date;
  signal?: AbortSignal;
}

/** gRPC channels to auth and config that forward serialized messages without decoding them. */
export interface Upstreams {
  call(upstream: Upstream, path: string, message: Uint8Array, options: ForwardOptions): Promise<Buffer>;
  close(): void;
}

/** Opens one channel per service; `credentials` are mutual TLS when configured, else plaintext. */
export function createUpstreams(addresses: Record<Upstream, string>, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()): Upstreams {
  const clients: Record<Upstream, grpc.Client> = {
    auth: new grpc.Client(addresses.auth, credentials),
    config: new grpc.Client(addresses.config, credentials),
  };
  return {
    call(upstream, path, message, options) {
      const metadata = new grpc.Metadata();
      if (options.authorization) metadata.set('authorization', options.authorization);
      if (options.origin) metadata.set('origin', options.origin);
      if (options.traceparent) metadata.set('traceparent', options.traceparent);
      return new Promise((resolve, reject) => {
        const call = clients[upstream].makeUnaryRequest(`/${path}`, identity, identity, Buffer.from(message), metadata, { deadline: options.deadline }, (err, res) =>
          err ? reject(err) : resolve(res ?? Buffer.alloc(0)),
        );
        options.signal?.addEventListener('abort', () => call.cancel(), { once: true });
      });
    },
    close() {
      clients.auth.close();
      clients.config.close();
    },
  };
}
