import { createHash } from 'node:crypto';
import { CofferError, isCofferError } from './errors';

/** The most characters of a request_id (idempotency key). */
export const MAX_REQUEST_ID_CHARS = 128;
const REQUEST_ID = new RegExp(`^[A-Za-z0-9._:~-]{1,${MAX_REQUEST_ID_CHARS}}$`);

/** The namespace of every id Coffer derives from a request_id (a UUIDv5 namespace of its own). */
const REQUEST_NAMESPACE = 'a4c1d3f0-5e0b-4c7e-9b7a-2f6c0e1d9c42';

/**
 * The idempotency key of a create call, or undefined when the caller sent none (unset or empty).
 * A key out of bounds is INVALID_ARGUMENT naming `request_id`, without quoting it.
 */
export function requestIdOf(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (!REQUEST_ID.test(value)) {
    throw new CofferError('invalid_argument', `request_id must be 1 to ${MAX_REQUEST_ID_CHARS} letters, digits or "-_.:~"`, [{ field: 'request_id', reason: 'invalid' }]);
  }
  return value;
}

/** A name-based UUID (RFC 9562 version 5: SHA-1 of the namespace and the name). */
export function uuidV5(namespace: string, name: string): string {
  const hash = createHash('sha1').update(Buffer.from(namespace.replace(/-/g, ''), 'hex')).update(name, 'utf8').digest();
  const b = hash.subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The id of the entity a keyed create makes: the same (scope, method, key) always names the same
 * entity, another scope or method another one. The scope is the tenant (workspace, organization...),
 * so one tenant's key can never reach, or reveal, another tenant's entity.
 */
export function idempotentId(scope: string, method: string, requestId: string): string {
  // JSON keeps the three parts apart whatever characters a scope holds.
  return uuidV5(REQUEST_NAMESPACE, JSON.stringify([method, scope, requestId]));
}

/** One create that a request_id makes idempotent; see {@link createOnce}. */
export interface OnceOptions<T> {
  /** The caller's request_id, unchecked (unset or empty: no key). */
  requestId: string | undefined;
  /** The tenant the new entity lives in. */
  scope: string;
  /** The API method, so that one key on two methods names two calls. */
  method: string;
  /** A fresh id for a call without a key. */
  newId: () => string;
  /** The answer the call with this entity id gave when it was made, or undefined when there was none. */
  firstResult: (id: string) => Promise<T | undefined>;
  /** Makes the entity with this id; its append at the stream's first version is what records the key. */
  create: (id: string) => Promise<T>;
}

/**
 * Runs a create at most once per request_id. The new entity's id is derived from the key, so the
 * entity's own first append is the record of the key (no separate write that a crash could miss):
 * a repeat finds it and answers the first result; a repeat racing the first loses that append
 * (version_conflict) and answers the winner's result. Without a key, `create` gets a fresh id.
 */
export async function createOnce<T>(options: OnceOptions<T>): Promise<T> {
  const requestId = requestIdOf(options.requestId);
  if (requestId === undefined) return options.create(options.newId());
  const id = idempotentId(options.scope, options.method, requestId);
  const earlier = await options.firstResult(id);
  if (earlier !== undefined) return earlier;
  try {
    return await options.create(id);
  } catch (err) {
    if (!(isCofferError(err) && err.code === 'version_conflict')) throw err;
    const winner = await options.firstResult(id);
    if (winner !== undefined) return winner;
    throw err;
  }
}
