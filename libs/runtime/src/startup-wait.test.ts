import { describe, expect, it } from 'vitest';
import { CofferError } from '@coffer/contracts';
import { createLogger } from '@coffer/telemetry';
import { StartupWaitError, waitForDependency } from './startup-wait';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ service: 'test', level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { logger, lines };
}

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432 (postgres://user:hunter2@db)'), { code: 'ECONNREFUSED' });

describe('waitForDependency', () => {
  it('retries a refused connection with growing pauses, naming the setting, until it answers', async () => {
    const { logger, lines } = capture();
    let tries = 0;
    const value = await waitForDependency(
      async () => {
        tries += 1;
        if (tries < 4) throw refused();
        return 'up';
      },
      { what: 'Postgres', setting: 'DATABASE_URL', totalMs: 10_000, logger, firstDelayMs: 10, maxDelayMs: 40 },
    );
    expect(value).toBe('up');
    expect(tries).toBe(4);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings.map((l) => l.msg)).toEqual(Array(3).fill('Postgres (DATABASE_URL) not reachable yet; retrying'));
    expect(warnings.map((l) => l.retryInMs)).toEqual([10, 20, 40]);
    expect(warnings.every((l) => l.setting === 'DATABASE_URL' && l.reason === 'network:ECONNREFUSED')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ level: 30, setting: 'DATABASE_URL', tries: 4 });
    // The reason is a kind, never the message: it may quote a URL with its password.
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('gives up after the bound with an error naming the setting and the bound setting', async () => {
    const { logger } = capture();
    const started = Date.now();
    const err = await waitForDependency(
      async () => {
        throw new CofferError('unavailable', 'no connection established');
      },
      { what: "auth's JWKS", setting: 'AUTH_ADDRESS', totalMs: 300, logger, firstDelayMs: 20 },
    ).catch((e: unknown) => e);
    const tookMs = Date.now() - started;
    expect(err).toBeInstanceOf(StartupWaitError);
    expect((err as Error).message).toBe(
      "auth's JWKS did not answer within 300 ms (last failure: unavailable); check AUTH_ADDRESS, or wait longer with COFFER_STARTUP_WAIT_MS",
    );
    console.log(`gave up after ${tookMs} ms for a 300 ms bound`);
  });

  it('abandons an attempt that hangs past the bound', async () => {
    const { logger } = capture();
    const err = await waitForDependency(() => new Promise<never>(() => undefined), { what: 'NATS JetStream', setting: 'NATS_URL', totalMs: 50, logger }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StartupWaitError);
    expect((err as Error).message).toContain('(last failure: timeout); check NATS_URL');
  });

  it('stops at once on a failure time does not fix, still naming the setting', async () => {
    const { logger } = capture();
    let tries = 0;
    const err = await waitForDependency(
      async () => {
        tries += 1;
        throw Object.assign(new Error('database "nope" does not exist'), { code: '3D000' });
      },
      { what: 'Postgres', setting: 'DATABASE_URL', totalMs: 10_000, logger },
    ).catch((e: unknown) => e);
    expect(tries).toBe(1);
    expect((err as Error).message).toBe('could not use Postgres: 3D000; check DATABASE_URL');
  });
});
