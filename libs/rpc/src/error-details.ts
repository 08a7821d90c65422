import type * as grpc from '@grpc/grpc-js';
import type { ErrorDetail } from '@coffer/contracts';

/** Trailing-metadata key that carries a CofferError's details as JSON. */
export const ERROR_DETAILS_KEY = 'coffer-error-details';

// ASCII metadata values only: escape everything outside printable ASCII as \uXXXX (still valid JSON).
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The most UTF-8 bytes of a status message a caller is sent; the rest is cut. */
export const MAX_ERROR_MESSAGE_BYTES = 1024;
/** The most characters of the details header (escaped JSON) a caller is sent. */
export const MAX_ERROR_DETAILS_CHARS = 2048;
const MAX_DETAILS = 10;
const MAX_DETAIL_FIELD_BYTES = 200;
const MAX_DETAIL_REASON_BYTES = 300;
const ELLIPSIS = '…';

/**
 * Cuts `text` to at most `maxBytes` UTF-8 bytes at a character boundary, marking the cut with '…'.
 * Status messages travel in HTTP/2 trailers: one that does not fit leaves the call without an answer.
 */
export function boundText(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const budget = maxBytes - Buffer.byteLength(ELLIPSIS);
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > budget) break;
    bytes += size;
    end += ch.length;
  }
  return `${text.slice(0, end)}${ELLIPSIS}`;
}

/** A status message bounded to {@link MAX_ERROR_MESSAGE_BYTES}. */
export function boundErrorMessage(message: string): string {
  return boundText(message, MAX_ERROR_MESSAGE_BYTES);
}

/** @internal Writes `details` into `metadata` when there are any, bounded in number and size. */
export function writeErrorDetails(metadata: grpc.Metadata, details: readonly ErrorDetail[]): void {
  const kept: ErrorDetail[] = [];
  let json = '[]';
  for (const d of details.slice(0, MAX_DETAILS)) {
    const reason = boundText(d.reason, MAX_DETAIL_REASON_BYTES);
    const bounded = d.field === undefined ? { reason } : { field: boundText(d.field, MAX_DETAIL_FIELD_BYTES), reason };
    const next = asciiJson([...kept, bounded]);
    if (next.length > MAX_ERROR_DETAILS_CHARS) break;
    kept.push(bounded);
    json = next;
  }
  if (kept.length > 0) metadata.set(ERROR_DETAILS_KEY, json);
}

/** Reads the details a server attached; anything malformed is dropped, not trusted. */
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
