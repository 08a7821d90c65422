/**
 * Login outcomes of a client id. The count itself lives in one Postgres row per client id (see
 * `reserveLoginAttempt`), reserved before a secret is checked, so that concurrent attempts and
 * replicas share it; this module decides what the outcome of one attempt means.
 */

/** How many failures within which window lock a client out, and for how long. */
export interface LockoutPolicy {
  maxFailures: number;
  windowMs: number;
  lockMs: number;
}

export type ClientLockoutEvent =
  | { type: 'LoginFailed'; data: { clientId: string; failuresInWindow: number; failedAt: string } }
  | { type: 'ClientLocked'; data: { clientId: string; lockedUntil: string; lockedAt: string } }
  | { type: 'FailedLoginsCleared'; data: { clientId: string; clearedAt: string } };

/** What the shared count said about one attempt. */
export type LoginOutcome =
  /** The secret was checked and was wrong; `failuresInWindow` counts it; `lockedUntil` is set when it locked the client. */
  | { type: 'failed'; failuresInWindow: number; lockedUntil: string | null }
  /** The secret was right; `clearedFailures` is how many earlier failures it cleared. */
  | { type: 'succeeded'; clearedFailures: number }
  /** The client is locked, or its remaining attempts are all in flight: the secret was not checked. */
  | { type: 'refused' };

/** How long to hold a failed answer back: doubling from 250 ms with each recent failure, at most 4 s. */
export function failureDelayMs(failuresInWindow: number): number {
  return Math.min(4_000, 250 * 2 ** Math.max(0, failuresInWindow - 1));
}

/** The delay of a failed or refused attempt: a refused one waits as long as the one that locked. */
export function delayOf(outcome: LoginOutcome, policy: LockoutPolicy): number {
  return failureDelayMs(outcome.type === 'failed' ? outcome.failuresInWindow : policy.maxFailures);
}

/** The events a known client's attempt leaves in its log; refused attempts leave none. */
export function decide(clientId: string, outcome: LoginOutcome, now: string): ClientLockoutEvent[] {
  switch (outcome.type) {
    case 'refused':
      return [];
    case 'succeeded':
      return outcome.clearedFailures > 0 ? [{ type: 'FailedLoginsCleared', data: { clientId, clearedAt: now } }] : [];
    case 'failed': {
      const events: ClientLockoutEvent[] = [{ type: 'LoginFailed', data: { clientId, failuresInWindow: outcome.failuresInWindow, failedAt: now } }];
      if (outcome.lockedUntil) events.push({ type: 'ClientLocked', data: { clientId, lockedUntil: outcome.lockedUntil, lockedAt: now } });
      return events;
    }
  }
}
