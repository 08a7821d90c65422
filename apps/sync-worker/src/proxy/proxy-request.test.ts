import { describe, expect, it } from 'vitest';
import { isCofferError } from '@coffer/contracts';
import { createRedactor } from '@coffer/telemetry';
import { credentialHeaders } from './proxy-declaration';
import { checkProxyRequest, PROXY_LIMITS, resolveProxyPath } from './proxy-request';

const BASE = 'https://api.example.com/v1';

function refusal(fn: () => unknown): { code: string; field?: string } {
  try {
    fn();
  } catch (err) {
    if (isCofferError(err)) return { code: err.code, field: err.details[0]?.field };
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('resolveProxyPath', () => {
  it('resolves paths under the base URL, with or without a leading slash, keeping the query', () => {
    expect(resolveProxyPath(BASE, '/items?limit=5').href).toBe('https://api.example.com/v1/items?limit=5');
    expect(resolveProxyPath(BASE, 'items/42').href).toBe('https://api.example.com/v1/items/42');
    expect(resolveProxyPath(`${BASE}/`, 'items:batch').href).toBe('https://api.example.com/v1/items:batch');
    expect(resolveProxyPath(BASE, '').href).toBe('https://api.example.com/v1/');
  });

  it.each([
    ['a parent segment', '../admin'],
    ['a nested parent segment', 'items/../../admin'],
    ['a dot segment', './items'],
    ['an encoded dot', '%2e%2e/admin'],
    ['an upper-case encoded dot', 'items/%2E%2E/%2E%2E/admin'],
    ['an encoded slash', 'items%2f..%2fadmin'],
    ['an absolute URL', 'https://evil.example/steal'],
    ['an absolute URL after a slash', '/http://evil.example/'],
    ['a protocol-relative URL', '//evil.example/steal'],
    ['a backslash', '\\\\evil.example/steal'],
    ['a fragment', 'items#x'],
    ['a control character', 'items\r\nHost: evil'],
    ['a space', 'items x'],
  ])('refuses %s with INVALID_ARGUMENT naming path', (_kind, path) => {
    expect(refusal(() => resolveProxyPath(BASE, path))).toEqual({ code: 'invalid_argument', field: 'path' });
  });

  it('refuses a path longer than the bound', () => {
    expect(refusal(() => resolveProxyPath(BASE, 'a'.repeat(PROXY_LIMITS.pathChars + 1)))).toEqual({ code: 'invalid_argument', field: 'path' });
  });
});

describe('checkProxyRequest', () => {
  const ok = { method: 'post', path: '/items', headers: [{ name: 'Content-Type', value: 'application/json' }], body: Buffer.from('{}') };

  it('accepts a request within the bounds', () => {
    const checked = checkProxyRequest(ok, { baseUrl: BASE });
    expect(checked.method).toBe('POST');
    expect(checked.headers).toEqual([{ name: 'content-type', value: 'application/json' }]);
  });

  it.each([
    ['an unknown method', { method: 'TRACE' }, 'method'],
    ['no method', { method: '' }, 'method'],
    ['Authorization', { headers: [{ name: 'Authorization', value: 'Bearer mine' }] }, 'headers[0].name'],
    ['the declared API-key header', { headers: [{ name: 'x-ok', value: '1' }, { name: 'X-Api-Key', value: 'mine' }] }, 'headers[1].name'],
    ['Cookie', { headers: [{ name: 'cookie', value: 'a=b' }] }, 'headers[0].name'],
    ['Host', { headers: [{ name: 'Host', value: 'evil.example' }] }, 'headers[0].name'],
    ['a hop-by-hop header', { headers: [{ name: 'Connection', value: 'close' }] }, 'headers[0].name'],
    ['a header name that is no token', { headers: [{ name: 'bad name', value: 'x' }] }, 'headers[0].name'],
    ['a header value with a line break', { headers: [{ name: 'x-a', value: 'a\r\nb: c' }] }, 'headers[0].value'],
    ['a too long header value', { headers: [{ name: 'x-a', value: 'v'.repeat(PROXY_LIMITS.headerValueChars + 1) }] }, 'headers[0].value'],
    ['too many headers', { headers: Array.from({ length: PROXY_LIMITS.headers + 1 }, (_, i) => ({ name: `x-${i}`, value: '1' })) }, 'headers'],
    ['a too large body', { body: Buffer.alloc(PROXY_LIMITS.bodyBytes + 1) }, 'body'],
    ['a body with GET', { method: 'GET', body: Buffer.from('x') }, 'body'],
    ['a path escape', { path: '../x' }, 'path'],
  ])('refuses %s naming the field', (_kind, change, field) => {
    expect(refusal(() => checkProxyRequest({ ...ok, ...change }, { baseUrl: BASE, credentialHeader: 'x-api-key' }))).toEqual({ code: 'invalid_argument', field });
  });
});

describe('credentialHeaders', () => {
  it('derives the Basic header and registers every form a redactor needs to hide it', () => {
    const { headers, derived } = credentialHeaders({ type: 'basic', usernameField: 'username', passwordField: 'password' }, { username: 'svc-user', password: 'pw-canary-1234' });
    expect(headers.authorization).toBe(`Basic ${Buffer.from('svc-user:pw-canary-1234').toString('base64')}`);
    const redactor = createRedactor();
    for (const v of ['pw-canary-1234', ...derived]) redactor.register(v);
    const echoed = `${headers.authorization} ${encodeURIComponent('svc-user:pw-canary-1234')} ${Buffer.from('svc-user:pw-canary-1234').toString('base64url')}`;
    expect(redactor.redact(echoed)).not.toMatch(/pw-canary|c3ZjLXVzZXI6cHctY2FuYXJ5LTEyMzQ/);
  });

  it('puts an API key in the declared header with its prefix', () => {
    expect(credentialHeaders({ type: 'api_key_header', header: 'x-api-key', keyField: 'api_key', prefix: 'Token ' }, { api_key: 'k-1234' }).headers).toEqual({ 'x-api-key': 'Token k-1234' });
  });

  it('refuses a declared field the config leaves empty', () => {
    expect(() => credentialHeaders({ type: 'bearer', tokenField: 'api_token' }, {})).toThrow(/api_token/);
  });
});
