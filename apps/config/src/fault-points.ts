/**
 * Where `COFFER_FAULT_POINT` (tests only) makes the config process kill itself, to prove that every
 * point of a cross-service write is recoverable:
 * - `after-secrets-write`: WriteSecrets answered, the actor event is not appended yet (create, update);
 * - `before-secrets-delete`: a queued shred was taken, DeleteSecrets not called yet (delete, update);
 * - `after-secrets-delete`: DeleteSecrets answered, the queue entry is not completed yet.
 */
export const FAULT_POINTS = ['after-secrets-write', 'before-secrets-delete', 'after-secrets-delete'] as const;

/** One of {@link FAULT_POINTS}. */
export type FaultPoint = (typeof FAULT_POINTS)[number];
