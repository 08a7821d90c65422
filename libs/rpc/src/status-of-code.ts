import { status } from '@grpc/grpc-js';
import type { ErrorCode } from '@coffer/contracts';

/** The one table from Coffer error codes to gRPC status codes. */
export const statusOfCode: Readonly<Record<ErrorCode, status>> = Object.freeze({
  not_found: status.NOT_FOUND,
  version_conflict: status.ABORTED,
  invalid_argument: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  permission_denied: status.PERMISSION_DENIED,
  failed_precondition: status.FAILED_PRECONDITION,
  unavailable: status.UNAVAILABLE,
  internal: status.INTERNAL,
});

const codeByStatus = new Map<status, ErrorCode>(
  (Object.entries(statusOfCode) as [ErrorCode, status][]).map(([code, s]) => [s, code]),
);

/**
 * The Coffer error code a caller sees for a gRPC status: the inverse of {@link statusOfCode}, with
 * transport-level failures (deadline, cancellation, overload) as `unavailable` and the rest as `internal`.
 */
export function codeOfStatus(s: status): ErrorCode {
  const direct = codeByStatus.get(s);
  if (direct) return direct;
  switch (s) {
    case status.DEADLINE_EXCEEDED:
    case status.CANCELLED:
    case status.RESOURCE_EXHAUSTED:
      return 'unavailable';
    case status.OUT_OF_RANGE:
      return 'invalid_argument';
    case status.ALREADY_EXISTS:
      return 'failed_precondition';
    default:
      return 'internal';
  }
}
