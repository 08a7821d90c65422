import { describe, expect, it } from 'vitest';
import { createRedactor, MIN_REDACTED_LENGTH, REDACTED } from './redactor';

describe('createRedactor', () => {
  it('replaces every occurrence of a registered value', () => {
    const r = createRedactor();
    r.register('hunter22');
    expect(r.redact('pw=hunter22 again hunter22!')).toBe(`pw=${REDACTED} again ${REDACTED}!`);
    expect(r.size()).toBe(1);
  });

  it('replaces the longest value first so no fragment of a longer secret survives', () => {
    const r = createRedactor();
    r.register('abcd');
    r.register('abcdefghij');
    expect(r.redact('x abcdefghij y abcd z')).toBe(`x ${REDACTED} y ${REDACTED} z`);
  });

  it('replaces the JSON-escaped and doubly escaped forms of a value', () => {
    const r = createRedactor();
    const value = 'pa"ss\\wo\nrd';
    r.register(value);
    const once = JSON.stringify({ v: value });
    const twice = JSON.stringify({ body: once });
    expect(r.redact(once)).toBe(`{"v":"${REDACTED}"}`);
    expect(r.redact(twice)).not.toContain('ss\\\\\\\\wo');
    expect(JSON.parse(JSON.parse(r.redact(twice)).body)).toEqual({ v: REDACTED });
  });

  it('replaces the URL-encoded, form-encoded and base64 forms of a value, and base64 runs that hide it (Basic headers, wrapped tokens)', () => {
    const r = createRedactor();
    const value = 'canary s3cr/t+&=ü-token';
    r.register(value);
    const forms = [
      encodeURIComponent(value),
      new URLSearchParams({ v: value }).toString().slice(2),
      Buffer.from(value).toString('base64'),
      Buffer.from(value).toString('base64').replace(/=+$/, ''),
      Buffer.from(value).toString('base64url'),
      Buffer.from(`client-id:${value}`).toString('base64'),
      Buffer.from(JSON.stringify({ sub: 'x', token: value })).toString('base64url'),
    ];
    for (const form of forms) {
      const out = r.redact(`upstream said: Authorization: Basic ${form} (again ${JSON.stringify(form)})`);
      expect(out).not.toContain(form);
      expect(out).toContain('upstream said: Authorization: Basic');
    }
    expect(r.redact('an ordinary line with words like upstream and Authorization')).toBe('an ordinary line with words like upstream and Authorization');
    expect(r.redact(Buffer.from('client-id:something-else').toString('base64'))).toBe(Buffer.from('client-id:something-else').toString('base64'));
  });

  it('treats regular-expression characters literally', () => {
    const r = createRedactor();
    r.register('a.b*c(d)');
    expect(r.redact('a.b*c(d) aXbbc(d)')).toBe(`${REDACTED} aXbbc(d)`);
  });

  it('ignores values shorter than the minimum length', () => {
    const r = createRedactor();
    expect(MIN_REDACTED_LENGTH).toBe(4);
    r.register('');
    r.register('abc');
    expect(r.size()).toBe(0);
    expect(r.redact('abc level info')).toBe('abc level info');
    r.register('abcd');
    expect(r.size()).toBe(1);
  });

  it('stops redacting a value once unregistered as often as registered', () => {
    const r = createRedactor();
    r.register('token-1234');
    r.register('token-1234');
    r.unregister('token-1234');
    expect(r.redact('token-1234')).toBe(REDACTED);
    r.unregister('token-1234');
    expect(r.size()).toBe(0);
    expect(r.redact('token-1234')).toBe('token-1234');
    r.unregister('never-registered');
    expect(r.size()).toBe(0);
  });
});
