import * as grpc from '@grpc/grpc-js';
import { Code, ConnectError } from '@connectrpc/connect';
import { codeToHttpStatus, codeToString } from '@connectrpc/connect/protocol-connect';
import type { ErrorDetail } from '@coffer/contracts';
import { ERROR_DETAILS_KEY, INTERNAL_ERROR_MESSAGE, boundErrorMessage, readErrorDetails } from '@coffer/rpc';

/** The message a caller sees when the edge could not reach the service (never the address or the socket error). */
export const UPSTREAM_UNAVAILABLE_MESSAGE = 'the service is unavailable; retry the call';

/** An error as the edge answers it: the gRPC status code (Connect uses the same numbers), a bounded message, field details. */
export interface EdgeError {
  code: grpc.status;
  message: string;
  details: ErrorDetail[];
}

// grpc-js reports a channel that cannot connect, or a call it gave up, with its own text, which can
// name addresses and socket errors: the caller gets a fixed message instead.
const TRANSPORT = /No connection established|ECONNREFUSED|ECONNRESET|Name resolution failed|Connection dropped|Deadline exceeded|Call cancelled|failed to connect|Received RST_STREAM/i;

/** Maps what a forwarded call failed with to the error the caller gets, code for code. */
export function edgeErrorOf(err: unknown): EdgeError {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e?.code !== 'number' || !(e.code in grpc.status)) return { code: grpc.status.INTERNAL, message: INTERNAL_ERROR_MESSAGE, details: [] };
  const details = readErrorDetails(e.metadata);
  const raw = e.details ?? '';
  if (TRANSPORT.test(raw) && [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED, grpc.status.INTERNAL, grpc.status.UNKNOWN].includes(e.code)) {
    return { code: e.code === grpc.status.DEADLINE_EXCEEDED ? e.code : grpc.status.UNAVAILABLE, message: UPSTREAM_UNAVAILABLE_MESSAGE, details: [] };
  }
  return { code: e.code, message: boundErrorMessage(raw || grpc.status[e.code]), details };
}

/** The same error as a ConnectError, the details in the `coffer-error-details` header as the services send them. */
export function connectErrorOf(error: EdgeError): ConnectError {
  const metadata = new Headers();
  if (error.details.length > 0) metadata.set(ERROR_DETAILS_KEY, JSON.stringify(error.details));
  return new ConnectError(error.message, error.code as number as Code, metadata);
}

/** The snake_case name of a status code, as Connect writes it in JSON error bodies. */
export function codeName(code: grpc.status): string {
  return codeToString(code as number as Code);
}

/** The HTTP status of a status code, as the Connect protocol maps it. */
export function httpStatusOf(code: grpc.status): number {
  return codeToHttpStatus(code as number as Code);
}
