import * as grpc from '@grpc/grpc-js';
import type { Histogram } from '@opentelemetry/api';
import { CofferError, connectionLoss, isCofferError } from '@coffer/contracts';
import type { Logger } from '@coffer/telemetry';
import { hasPermission, isServiceRole, type Principal, type TokenVerifier } from '@coffer/tokens';
import type { CallContext, MethodSpec } from './call-context';
import { boundErrorMessage, writeErrorDetails } from './error-details';
import { nulCharacterField } from './nul-characters';
import { statusOfCode } from './status-of-code';
import { traceIdOf } from './trace-context';

/** The message a caller sees for any error that is not a CofferError. */
export const INTERNAL_ERROR_MESSAGE = 'internal error';

/** The message a caller sees when a Postgres or NATS connection was lost or refused during the call. */
export const CONNECTION_LOST_MESSAGE = 'a backing service is unavailable; retry the call';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** @internal What the middleware needs from the server. */
export interface MiddlewareDeps {
  verifier?: TokenVerifier;
  logger: Logger;
  /** Take a service's identity from its verified client certificate (mutual TLS). */
  certificateIdentity?: boolean;
  /** Records each call's duration by method and status code. */
  duration?: Histogram;
}

/** The service a verified client certificate names (its CN), with the certificate's validity. */
interface PeerIdentity {
  name: string;
  fingerprint: string;
  validFrom: Date;
  validTo: Date;
}

function peerIdentity(call: grpc.ServerUnaryCall<unknown, unknown>): PeerIdentity | undefined {
  const cert = call.getAuthContext?.()?.sslPeerCertificate;
  const cn = cert?.subject?.CN;
  if (!cert || typeof cn !== 'string' || cn.length === 0) return undefined;
  return { name: cn, fingerprint: cert.fingerprint256, validFrom: new Date(cert.valid_from), validTo: new Date(cert.valid_to) };
}

/** The principal of a call that carries no token but a client certificate naming a service role. */
function certificatePrincipal(peer: PeerIdentity, verifier: TokenVerifier | undefined): Principal {
  if (!isServiceRole(peer.name)) throw new CofferError('unauthenticated', 'missing bearer token');
  const principal: Principal = {
    subject: peer.name,
    kind: 'service',
    tokenType: 'x509',
    role: peer.name,
    tokenId: `x509:${peer.fingerprint}`,
    // A revoked service identity is refused for every certificate issued before its revocation.
    issuedAt: peer.validFrom,
    expiresAt: peer.validTo,
  };
  if (verifier?.isRevoked?.(principal)) throw new CofferError('unauthenticated', 'invalid certificate: revoked');
  return principal;
}

async function authenticate(metadata: grpc.Metadata, verifier: TokenVerifier | undefined, peer?: PeerIdentity): Promise<Principal> {
  const values = metadata.get('authorization');
  if (values.length === 0) {
    if (peer) return certificatePrincipal(peer, verifier);
    throw new CofferError('unauthenticated', 'missing bearer token');
  }
  if (values.length > 1 || typeof values[0] !== 'string') throw new CofferError('unauthenticated', 'malformed authorization header');
  const match = BEARER.exec(values[0]);
  if (!match) throw new CofferError('unauthenticated', 'malformed authorization header');
  // createGrpcServer refuses protected methods without a verifier; this keeps the check local too.
  if (!verifier) throw new CofferError('unauthenticated', 'no token verifier configured');
  return verifier.verify(match[1]!);
}

function originOf(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get('origin');
  return values.length === 1 && typeof values[0] === 'string' ? values[0] : undefined;
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): Date | undefined {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline;
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}

function toServiceError(err: unknown, logger: Logger): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (isCofferError(err)) {
    const message = boundErrorMessage(err.message);
    if (err.code === 'internal' || err.code === 'unavailable') logger.warn({ code: err.code, message }, 'call failed');
    else logger.debug({ code: err.code, message }, 'call failed');
    writeErrorDetails(metadata, err.details);
    return { code: statusOfCode[err.code], details: message, metadata };
  }
  // A lost database or broker connection is the caller's to retry (the pool reconnects), not a bug.
  const lost = connectionLoss(err);
  if (lost) {
    logger.warn({ err, connection: lost }, 'call failed: a backing connection was lost');
    return { code: grpc.status.UNAVAILABLE, details: CONNECTION_LOST_MESSAGE, metadata };
  }
  // Raw errors can carry connection strings, SQL or values: log them, never send them.
  logger.error({ err }, 'unhandled error in handler');
  return { code: grpc.status.INTERNAL, details: INTERNAL_ERROR_MESSAGE, metadata };
}

/**
 * @internal Wraps one method spec as a grpc-js unary handler: authenticates and authorizes, builds the
 * CallContext, runs the handler, and maps whatever it throws to a status without leaking internals.
 */
export function wrapUnary(path: string, spec: MethodSpec<unknown, unknown>, deps: MiddlewareDeps): grpc.handleUnaryCall<unknown, unknown> {
  const [, service = '', method = ''] = /^\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
  return (call, callback) => {
    const started = performance.now();
    const record = (code: grpc.status) =>
      deps.duration?.record(performance.now() - started, { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method, 'rpc.grpc.status_code': code });
    const traceId = traceIdOf(call.metadata);
    const abort = new AbortController();
    const deadline = deadlineOf(call);
    const onCancelled = () => abort.abort(new CofferError('unavailable', 'the call was cancelled'));
    call.on('cancelled', onCancelled);
    if (call.cancelled) onCancelled();
    const msLeft = deadline ? deadline.getTime() - Date.now() : Number.POSITIVE_INFINITY;
    // Timers take at most 2^31-1 ms; a farther deadline needs no timer.
    const timer =
      msLeft < 2 ** 31 - 1 ? setTimeout(() => abort.abort(new CofferError('unavailable', 'the deadline of the call passed')), Math.max(0, msLeft)) : undefined;
    const settle = () => {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancelled);
    };
    // Made when first used: most calls log nothing.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= deps.logger.child(traceId ? { method: path, traceId } : { method: path }));
    const run = async (): Promise<unknown> => {
      let principal: Principal | undefined;
      if (spec.permission !== 'public') {
        const peer = deps.certificateIdentity ? peerIdentity(call) : undefined;
        principal = await authenticate(call.metadata, deps.verifier, peer);
        // With mutual TLS a service token must be of the service the certificate names.
        if (peer && principal.kind === 'service' && principal.role !== peer.name) {
          log().warn({ subject: principal.subject, role: principal.role, certificate: peer.name }, 'service token of another service than the client certificate');
          throw new CofferError('permission_denied', 'the service token does not match the client certificate');
        }
        if (spec.tokenKinds && !spec.tokenKinds.includes(principal.kind)) {
          log().warn({ subject: principal.subject, kind: principal.kind }, 'wrong kind of token');
          throw new CofferError('permission_denied', `this method takes ${spec.tokenKinds.join(' or ')} tokens, not ${principal.kind} tokens`);
        }
        // A widget token works only from the browser origin it was issued for (the Origin header that
        // a grpc-web proxy forwards); anything else presenting it is refused.
        if (principal.kind === 'widget' && originOf(call.metadata) !== principal.origin) {
          log().warn({ subject: principal.subject }, 'widget token from another origin');
          throw new CofferError('permission_denied', 'widget token used from an origin it is not bound to');
        }
        if (!hasPermission(principal, spec.permission)) {
          log().warn({ subject: principal.subject, role: principal.role, permission: spec.permission }, 'permission denied');
          throw new CofferError('permission_denied', `role ${principal.role} lacks ${spec.permission}`);
        }
      }
      // No service stores a NUL character (Postgres refuses it in text and jsonb): refuse it up front.
      const nul = nulCharacterField(call.request);
      if (nul) throw new CofferError('invalid_argument', `${nul} holds a NUL character`, [{ field: nul, reason: 'holds a NUL character' }]);
      const ctx: CallContext = {
        principal,
        metadata: call.metadata,
        get logger() {
          return log();
        },
        deadline,
        signal: abort.signal,
        traceId,
      };
      return spec.handler(call.request, ctx);
    };
    run().then(
      (res) => {
        settle();
        record(grpc.status.OK);
        callback(null, res);
      },
      (err: unknown) => {
        settle();
        const error = toServiceError(err, log());
        record(error.code ?? grpc.status.UNKNOWN);
        callback(error);
      },
    );
  };
}
