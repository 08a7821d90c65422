/** The closed set of error codes every Coffer service speaks; `libs/rpc` maps each to a gRPC status. */
export const errorCodes = [
  'not_found',
  'version_conflict',
  'invalid_argument',
  'unauthenticated',
  'permission_denied',
  'failed_precondition',
  'unavailable',
  'internal',
] as const;

/** One of {@link errorCodes}. */
export type ErrorCode = (typeof errorCodes)[number];

/** A detail attached to an error, e.g. the JSON path of an invalid field. Never a secret value. */
export interface ErrorDetail {
  field?: string;
  reason: string;
}

/** The one error type services throw on purpose; anything else becomes INTERNAL with a generic message. */
export class CofferError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];

  constructor(code: ErrorCode, message: string, details: ErrorDetail[] = []) {
    super(message);
    this.name = 'CofferError';
    this.code = code;
    this.details = details;
  }
}

/** True when `err` is a {@link CofferError} (also across duplicated module copies). */
export function isCofferError(err: unknown): err is CofferError {
  return err instanceof CofferError || (err instanceof Error && err.name === 'CofferError' && 'code' in err);
}
