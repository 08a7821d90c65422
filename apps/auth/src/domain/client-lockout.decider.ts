import { CofferError } from '@coffer/contracts';

/** How many failures within which window lock a client out, and for how long. */
export interface LockoutPolicy {
  maxFailures: number;
  windowMs: number;
  lockMs: number;
}

/** A wrong client secret was presented for a known client id. */
export interface RecordFailedLogin {
  type: 'RecordFailedLogin';
  clientId: string;
  now: string;
  policy: LockoutPolicy;
}

/** The right secret was presented: earlier failures no longer count. */
export interface RecordSuccessfulLogin {
  type: 'RecordSuccessfulLogin';
  clientId: string;
  now: string;
}

export type ClientLockoutCommand = RecordFailedLogin | RecordSuccessfulLogin;

export type ClientLockoutEvent =
  | { type: 'LoginFailed'; data: { clientId: string; failuresInWindow: number; failedAt: string } }
  | { type: 'ClientLocked'; data: { clientId: string; lockedUntil: string; lockedAt: string } }
  | { type: 'FailedLoginsCleared'; data: { clientId: string; clearedAt: string } };

export interface ClientLockoutState {
  /** Times (ms) of the failures since the last success or lock. */
  failures: number[];
  lockedUntil: number;
}

/** A client that never failed. */
export function initialState(): ClientLockoutState {
  return { failures: [], lockedUntil: 0 };
}

/** Applies one event to the state. */
export function evolve(state: ClientLockoutState, event: ClientLockoutEvent): ClientLockoutState {
  switch (event.type) {
    case 'LoginFailed':
      return { ...state, failures: [...state.failures, Date.parse(event.data.failedAt)] };
    case 'ClientLocked':
      return { failures: [], lockedUntil: Date.parse(event.data.lockedUntil) };
    case 'FailedLoginsCleared':
      return { ...state, failures: [] };
  }
}

/** True while the client is locked out. */
export function isLocked(state: ClientLockoutState, now: Date): boolean {
  return state.lockedUntil > now.getTime();
}

/** How long to hold a failed answer back: doubling from 250 ms with each recent failure, at most 4 s. */
export function failureDelayMs(failuresInWindow: number): number {
  return Math.min(4_000, 250 * 2 ** Math.max(0, failuresInWindow - 1));
}

/** Decides the events of a login outcome. */
export function decide(command: ClientLockoutCommand, state: ClientLockoutState): ClientLockoutEvent[] {
  const now = Date.parse(command.now);
  if (command.type === 'RecordSuccessfulLogin') {
    if (state.lockedUntil > now) throw new CofferError('unauthenticated', 'invalid client credentials');
    return state.failures.length > 0 ? [{ type: 'FailedLoginsCleared', data: { clientId: command.clientId, clearedAt: command.now } }] : [];
  }
  const recent = state.failures.filter((t) => t > now - command.policy.windowMs).length + 1;
  const events: ClientLockoutEvent[] = [{ type: 'LoginFailed', data: { clientId: command.clientId, failuresInWindow: recent, failedAt: command.now } }];
  if (recent >= command.policy.maxFailures && state.lockedUntil <= now) {
    events.push({ type: 'ClientLocked', data: { clientId: command.clientId, lockedUntil: new Date(now + command.policy.lockMs).toISOString(), lockedAt: command.now } });
  }
  return events;
}
