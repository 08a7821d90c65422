import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '@coffer/telemetry';
import type { Permission, Principal, TokenKind } from '@coffer/tokens';

/** What a handler gets besides its request. */
export interface CallContext {
  /** The verified caller; absent on public methods. */
  principal?: Principal;
  /** The request metadata (headers). */
  metadata: grpc.Metadata;
  /** A child logger carrying the method name and the trace id. */
  logger: Logger;
  /** When the caller gives up; absent when it set no deadline. */
  deadline?: Date;
  /** Aborted when the caller cancels or its deadline passes: work not yet committed should stop. */
  signal?: AbortSignal;
  traceId?: string;
}

/** One unary method: the permission it needs (or 'public') and its handler. */
export interface MethodSpec<Req, Res> {
  permission: Permission | 'public';
  /** The kinds of token the method takes; default: every kind the server's verifier accepts. */
  tokenKinds?: readonly TokenKind[];
  handler: (req: Req, ctx: CallContext) => Promise<Res>;
}

// Drops index signatures (grpc's UntypedServiceImplementation has one) so only real methods remain.
type KnownKey<K> = string extends K ? never : number extends K ? never : symbol extends K ? never : K;

/** Handlers for a grpc-js server interface, e.g. `ServiceHandlers<secretsV1.SecretsServiceServer>`. */
export type ServiceHandlers<S extends grpc.UntypedServiceImplementation> = {
  [K in keyof S as KnownKey<K>]: S[K] extends grpc.handleUnaryCall<infer Req, infer Res> ? MethodSpec<Req, Res> : never;
};

/** Handlers for a grpc-js service definition, e.g. `DefinitionHandlers<typeof secretsV1.SecretsServiceService>`. */
export type DefinitionHandlers<D> = {
  [K in keyof D as KnownKey<K>]: D[K] extends grpc.MethodDefinition<infer Req, infer Res> ? MethodSpec<Req, Res> : never;
};
