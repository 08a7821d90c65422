import * as grpc from '@grpc/grpc-js';
import { CofferError, isCofferError } from '@coffer/contracts';
import { readErrorDetails } from './error-details';
import { codeOfStatus } from './status-of-code';
import { injectTraceContext } from './trace-context';

/** Supplies the bearer token for each call (cached by the provider, not by the client). */
export type TokenProvider = () => Promise<string>;

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

type UnaryKey<C, K extends keyof C> = K extends keyof grpc.Client ? never : C[K] extends UnaryMethod<infer _Req, infer _Res> ? K : never;

/** The unary methods of a ts-proto grpc-js client, each as `(req) => Promise<res>`. */
export type PromiseClient<C> = {
  [K in keyof C as UnaryKey<C, K>]: C[K] extends UnaryMethod<infer Req, infer Res> ? (request: Req) => Promise<Res> : never;
};

/** Options of {@link createPromiseClient}. */
export interface PromiseClientOptions {
  /** When given, every call carries `authorization: Bearer <token>`. */
  tokenProvider?: TokenProvider;
  /** Per-call deadline; default 10 s. */
  deadlineMs?: number;
  /** Default: insecure (plaintext). */
  credentials?: grpc.ChannelCredentials;
}

type ClientCtor<C> = (new (address: string, creds: grpc.ChannelCredentials) => C) & { service?: grpc.ServiceDefinition };

/** @internal Turns a grpc-js ServiceError into the CofferError the server meant (or `unavailable` for transport failures). */
export function fromServiceError(err: grpc.ServiceError): CofferError {
  const code = codeOfStatus(err.code);
  const message = err.details || grpc.status[err.code] || 'call failed';
  const coffer = new CofferError(code, message, readErrorDetails(err.metadata));
  Object.defineProperty(coffer, 'cause', { value: err, enumerable: false });
  return coffer;
}

async function tokenOf(provider: TokenProvider): Promise<string> {
  try {
    return await provider();
  } catch (err) {
    if (isCofferError(err)) throw err;
    const coffer = new CofferError('unavailable', 'could not obtain a service token');
    Object.defineProperty(coffer, 'cause', { value: err, enumerable: false });
    throw coffer;
  }
}

/**
 * Wraps a ts-proto grpc-js client so each unary method returns a promise; every call carries the
 * bearer token, a deadline and the trace context, and fails with a CofferError.
 */
export function createPromiseClient<C extends grpc.Client>(
  ClientCtor: new (address: string, creds: grpc.ChannelCredentials) => C,
  address: string,
  options: PromiseClientOptions = {},
): PromiseClient<C> & { close(): void } {
  const definition = (ClientCtor as ClientCtor<C>).service;
  if (!definition) throw new Error('createPromiseClient needs a generated client constructor (with a static `service`)');
  const client = new ClientCtor(address, options.credentials ?? grpc.credentials.createInsecure());
  const deadlineMs = options.deadlineMs ?? 10_000;
  const wrapper: Record<string, unknown> = {};

  for (const [key, method] of Object.entries(definition)) {
    if (method.requestStream || method.responseStream) continue;
    const invoke = (client as unknown as Record<string, UnaryMethod<unknown, unknown>>)[key]!.bind(client);
    wrapper[key] = async (request: unknown): Promise<unknown> => {
      const metadata = new grpc.Metadata();
      if (options.tokenProvider) metadata.set('authorization', `Bearer ${await tokenOf(options.tokenProvider)}`);
      injectTraceContext(metadata);
      return new Promise((resolve, reject) => {
        invoke(request, metadata, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
      });
    };
  }
  wrapper.close = () => client.close();
  return wrapper as PromiseClient<C> & { close(): void };
}
