import type * as grpc from '@grpc/grpc-js';
import type { ErrorDetail } from '@coffer/contracts';

/** Trailing-metadata key that carries a CofferError's details as JSON. */
export const ERROR_DETAILS_KEY = 'coffer-error-details';

// ASCII metadata values only: escape everything outside printable ASCII as \uXXXX (still valid JSON).
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** @internal Writes `details` into `metadata` when there are any. */
export function writeErrorDetails(metadata: grpc.Metadata, details: readonly ErrorDetail[]): void {
  if (details.length > 0) metadata.set(ERROR_DETAILS_KEY, asciiJson(details));
}

/** @internal Reads the details a server attached; anything malformed is dropped, not trusted. */
export function readErrorDetails(metadata: grpc.Metadata | undefined): ErrorDetail[] {
  const raw = metadata?.get(ERROR_DETAILS_KEY)[0];
  if (typeof raw !== 'string') return [];
  try {
    const parsed: unknown = JSON.parse(raw);
    if (!Array.isArray(parsed)) return [];
    return parsed
      .filter((d): d is Record<string, unknown> => typeof d === 'object' && d !== null && typeof (d as { reason?: unknown }).reason === 'string')
      .map((d) => (typeof d.field === 'string' ? { field: d.field, reason: d.reason as string } : { reason: d.reason as string }));
  } catch {
    return [];
  }
}
