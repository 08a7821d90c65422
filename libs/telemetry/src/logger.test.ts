import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CofferError } from '@coffer/contracts';
import { createLogger, type DestinationStream } from './logger';
import { createRedactor } from './redactor';

function capture(): DestinationStream & { lines: string[]; text(): string } {
  const lines: string[] = [];
  return {
    lines,
    write(s: string) {
      lines.push(s);
    },
    text: () => lines.join(''),
  };
}

describe('createLogger', () => {
  it('writes JSON lines with the service field', () => {
    const out = capture();
    const logger = createLogger({ service: 'secrets', destination: out });
    logger.info({ port: 50053 }, 'listening');
    expect(out.lines).toHaveLength(1);
    expect(out.lines[0]!.endsWith('\n')).toBe(true);
    expect(JSON.parse(out.lines[0]!)).toMatchObject({ level: 30, service: 'secrets', port: 50053, msg: 'listening' });
  });

  it('never writes a registered canary: plain, nested, JSON-escaped, in errors, stacks and causes', () => {
    const canary = `canary-${randomUUID()}`;
    const quoted = `q"uo\\te\nd-${randomUUID()}`;
    const redactor = createRedactor();
    redactor.register(canary);
    redactor.register(quoted);
    const out = capture();
    const logger = createLogger({ service: 'sync-worker', level: 'debug', redactor, destination: out });

    logger.info(`plain ${canary}`);
    logger.info({ config: { nested: { deeper: [{ password: canary }] } } }, 'nested');
    logger.info({ config: { password: quoted } }, 'escaped');
    logger.debug({ body: JSON.stringify({ password: quoted, again: canary }) }, 'json in json');
    logger.error(new Error(`connector failed: ${canary}`));
    logger.error({ err: new CofferError('internal', `wrapped ${quoted}`) }, 'with err key');
    logger.warn({ err: new Error('outer', { cause: new Error(`inner ${canary}`) }) }, 'with cause');
    logger.child({ token: canary }).info('child bindings');

    const text = out.text();
    expect(out.lines).toHaveLength(8);
    expect(text).not.toContain(canary);
    expect(text).not.toContain(quoted);
    expect(text).not.toContain(JSON.stringify(quoted).slice(1, -1));
    expect(text).not.toContain(JSON.stringify(JSON.stringify(quoted).slice(1, -1)).slice(1, -1));
    expect(text).not.toContain(canary.slice(0, 20) + canary.slice(20));
    const parsed = out.lines.map((l) => JSON.parse(l));
    expect(parsed[0].msg).toBe('plain [REDACTED]');
    expect(parsed[1].config.nested.deeper[0].password).toBe('[REDACTED]');
    expect(parsed[2].config.password).toBe('[REDACTED]');
    expect(JSON.parse(parsed[3].body)).toEqual({ password: '[REDACTED]', again: '[REDACTED]' });
    expect(parsed[4].err).toMatchObject({ type: 'Error', message: 'connector failed: [REDACTED]' });
    expect(parsed[4].err.stack).toContain('connector failed: [REDACTED]');
    expect(parsed[5].err).toMatchObject({ type: 'CofferError', message: 'wrapped [REDACTED]', code: 'internal' });
    expect(parsed[6].err.cause).toMatchObject({ type: 'Error', message: 'inner [REDACTED]' });
    expect(parsed[7].token).toBe('[REDACTED]');
  });

  it('keeps only type, message, stack, code and cause of an error', () => {
    const out = capture();
    const logger = createLogger({ service: 'secrets', destination: out });
    const err = Object.assign(new Error('query failed'), { code: '23505', parameters: ['ciphertext-bytes'] });
    logger.error({ err }, 'db');
    const line = JSON.parse(out.lines[0]!);
    expect(Object.keys(line.err).sort()).toEqual(['code', 'message', 'stack', 'type']);
    expect(out.text()).not.toContain('ciphertext-bytes');
  });

  it('picks up values registered after the logger was created and forgets unregistered ones', () => {
    const redactor = createRedactor();
    const out = capture();
    const logger = createLogger({ service: 'sync-worker', redactor, destination: out });
    redactor.register('late-secret');
    logger.info('value late-secret');
    redactor.unregister('late-secret');
    logger.info('value late-secret');
    expect(JSON.parse(out.lines[0]!).msg).toBe('value [REDACTED]');
    expect(JSON.parse(out.lines[1]!).msg).toBe('value late-secret');
  });

  it('leaves short values alone', () => {
    const redactor = createRedactor();
    redactor.register('abc');
    const out = capture();
    createLogger({ service: 'auth', redactor, destination: out }).info('abc');
    expect(JSON.parse(out.lines[0]!).msg).toBe('abc');
  });

  it('honours the level', () => {
    const out = capture();
    const logger = createLogger({ service: 'auth', level: 'warn', destination: out });
    logger.info('dropped');
    logger.warn('kept');
    expect(out.lines).toHaveLength(1);
  });
});
