import * as grpc from '@grpc/grpc-js';
import { CofferError, isCofferError } from '@coffer/contracts';
import type { Logger } from '@coffer/telemetry';
import { hasPermission, type Principal, type TokenVerifier } from '@coffer/tokens';
import type { CallContext, MethodSpec } from './call-context';
import { writeErrorDetails } from './error-details';
import { statusOfCode } from './status-of-code';
import { traceIdOf } from './trace-context';

/** The message a caller sees for any error that is not a CofferError. */
export const INTERNAL_ERROR_MESSAGE = 'internal error';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** @internal What the middleware needs from the server. */
export interface MiddlewareDeps {
  verifier?: TokenVerifier;
  logger: Logger;
}

async function authenticate(metadata: grpc.Metadata, verifier: TokenVerifier | undefined): Promise<Principal> {
  const values = metadata.get('authorization');
  if (values.length === 0) throw new CofferError('unauthenticated', 'missing bearer token');
  if (values.length > 1 || typeof values[0] !== 'string') throw new CofferError('unauthenticated', 'malformed authorization header');
  const match = BEARER.exec(values[0]);
  if (!match) throw new CofferError('unauthenticated', 'malformed authorization header');
  // createGrpcServer refuses protected methods without a verifier; this keeps the check local too.
  if (!verifier) throw new CofferError('unauthenticated', 'no token verifier configured');
  return verifier.verify(match[1]!);
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): Date | undefined {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline;
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}

function toServiceError(err: unknown, logger: Logger): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (isCofferError(err)) {
    if (err.code === 'internal' || err.code === 'unavailable') logger.warn({ err }, 'call failed');
    else logger.debug({ code: err.code, message: err.message }, 'call failed');
    writeErrorDetails(metadata, err.details);
    return { code: statusOfCode[err.code], details: err.message, metadata };
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
  return (call, callback) => {
    const traceId = traceIdOf(call.metadata);
    const logger = deps.logger.child(traceId ? { method: path, traceId } : { method: path });
    const run = async (): Promise<unknown> => {
      let principal: Principal | undefined;
      if (spec.permission !== 'public') {
        principal = await authenticate(call.metadata, deps.verifier);
        if (!hasPermission(principal, spec.permission)) {
          logger.warn({ subject: principal.subject, role: principal.role, permission: spec.permission }, 'permission denied');
          throw new CofferError('permission_denied', `role ${principal.role} lacks ${spec.permission}`);
        }
      }
      const ctx: CallContext = { principal, metadata: call.metadata, logger, deadline: deadlineOf(call), traceId };
      return spec.handler(call.request, ctx);
    };
    run().then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err, logger)),
    );
  };
}
