import { connectionLoss, isCofferError } from '@coffer/contracts';
import type { Logger } from '@coffer/telemetry';

/** Options of {@link waitForDependency}. */
export interface StartupWaitOptions {
  /** What is waited for, as an operator would name it: `Postgres`, `NATS`, `auth's JWKS`. */
  what: string;
  /** The setting that points at it (`DATABASE_URL`, `NATS_URL`, `AUTH_ADDRESS`), named in every line about it. */
  setting: string;
  /** How long to keep trying in all (`COFFER_STARTUP_WAIT_MS`). */
  totalMs: number;
  logger: Logger;
  /** Whether a failure may pass with time; any other failure ends the wait at once. Default: a lost or refused connection, or `unavailable`. */
  retryable?: (err: unknown) => boolean;
  /** First pause between attempts; it doubles up to `maxDelayMs`. Default 250 ms. */
  firstDelayMs?: number;
  /** Longest pause between attempts. Default 5 s. */
  maxDelayMs?: number;
  /** Current time in ms; tests pass their own. Default `Date.now`. */
  now?: () => number;
}

/** The setting that bounds every start-up wait, named in the error a service exits with. */
export const STARTUP_WAIT_SETTING = 'COFFER_STARTUP_WAIT_MS';

/** Default of {@link STARTUP_WAIT_SETTING}. */
export const DEFAULT_STARTUP_WAIT_MS = 60_000;

const MIN_ATTEMPT_MS = 1_000;

/** A failure to reach a dependency at start-up: its message names the setting to check, never its value. */
export class StartupWaitError extends Error {
  constructor(message: string, cause: unknown) {
    super(message);
    this.name = 'StartupWaitError';
    Object.defineProperty(this, 'cause', { value: cause, enumerable: false });
  }
}

/** A lost or refused connection, or a peer answering `unavailable`: worth another try during start-up. */
export function defaultStartupRetryable(err: unknown): boolean {
  return connectionLoss(err) !== undefined || (isCofferError(err) && err.code === 'unavailable');
}

// A failure's class or code, never its message: messages may quote a URL with credentials.
function reasonOf(err: unknown): string {
  const lost = connectionLoss(err);
  if (lost) return lost;
  if (isCofferError(err)) return err.code;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^[A-Za-z0-9_]{1,32}$/.test(code)) return code;
  return err instanceof Error && /^[A-Za-z0-9_]{1,64}$/.test(err.name) ? err.name : 'error';
}

/**
 * Runs `attempt` until it succeeds, pausing 250 ms, 500 ms, 1 s … up to 5 s between tries, for at
 * most `totalMs` in all (an attempt still running at the bound is abandoned; each gets at least 1 s). Each failure logs a
 * warning naming `setting`; a failure that is not `retryable` ends the wait at once, and so does the
 * bound, both with a {@link StartupWaitError} naming `setting` and {@link STARTUP_WAIT_SETTING}. The
 * attempt gets the time left, to bound its own connect timeout.
 */
export async function waitForDependency<T>(attempt: (remainingMs: number) => Promise<T>, options: StartupWaitOptions): Promise<T> {
  const { what, setting, totalMs, logger } = options;
  const retryable = options.retryable ?? defaultStartupRetryable;
  const maxDelayMs = options.maxDelayMs ?? 5_000;
  const now = options.now ?? Date.now;
  const started = now();
  const deadline = started + totalMs;
  let delayMs = options.firstDelayMs ?? 250;
  for (let tries = 1; ; tries++) {
    let timer: NodeJS.Timeout | undefined;
    // The last try gets a moment too, or a wait that slept up to the bound would never try again.
    const remaining = Math.max(deadline - now(), MIN_ATTEMPT_MS);
    const running = attempt(remaining);
    // An abandoned attempt may still fail later; that failure is of no interest.
    running.catch(() => undefined);
    let outcome: { ok: true; value: T } | { ok: false; err: unknown; timedOut?: boolean };
    try {
      outcome = await Promise.race([
        running.then((value) => ({ ok: true as const, value })),
        new Promise<{ ok: false; err: unknown; timedOut: true }>((resolve) => {
          timer = setTimeout(() => resolve({ ok: false, err: new Error('no answer'), timedOut: true }), remaining);
        }),
      ]);
    } catch (err) {
      outcome = { ok: false, err };
    } finally {
      clearTimeout(timer);
    }
    if (outcome.ok) {
      if (tries > 1) logger.info({ setting, tries, waitedMs: now() - started }, `${what} (${setting}) answered; continuing start-up`);
      return outcome.value;
    }
    const { err } = outcome;
    const reason = outcome.timedOut ? 'timeout' : reasonOf(err);
    if (!outcome.timedOut && !retryable(err)) {
      throw new StartupWaitError(`could not use ${what}: ${reason}; check ${setting}`, err);
    }
    const left = deadline - now();
    if (left <= 0) {
      throw new StartupWaitError(
        `${what} did not answer within ${totalMs} ms (last failure: ${reason}); check ${setting}, or wait longer with ${STARTUP_WAIT_SETTING}`,
        err,
      );
    }
    const pause = Math.min(delayMs, left);
    logger.warn({ setting, tries, reason, waitedMs: now() - started, retryInMs: pause, giveUpInMs: left }, `${what} (${setting}) not reachable yet; retrying`);
    await new Promise((resolve) => setTimeout(resolve, pause));
    delayMs = Math.min(delayMs * 2, maxDelayMs);
  }
}
