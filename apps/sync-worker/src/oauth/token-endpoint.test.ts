import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEgressPolicy } from '../connectors/egress-policy';
import { InvalidGrantError, exchangeAuthorizationCode, revokeRefreshToken } from './token-endpoint';

// A real HTTP server on 127.0.0.1 answering as the next test tells it to.
describe('revokeRefreshToken (RFC 7009)', () => {
  let server: Server;
  let base = '';
  let answer: { status: number; body: string } = { status: 200, body: '' };
  const seen: { headers: IncomingMessage['headers']; body: string }[] = [];
  const egress = createEgressPolicy({ allow: ['127.0.0.0/8'] });
  const credentials = { clientId: 'client-1', clientSecret: 'client-secret-canary', refreshToken: 'refresh/token+canary' };

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const revoke = (derived: string[] = []) =>
    revokeRefreshToken({ token_endpoint: `${base}/token`, revocation_endpoint: `${base}/revoke` }, credentials, { egress, signal: new AbortController().signal, onDerived: (v) => derived.push(v) });

  it('posts the refresh token with its type hint and the client as HTTP Basic, and tells every derived value first', async () => {
    answer = { status: 200, body: '' };
    const derived: string[] = [];
    expect(await revoke(derived)).toEqual({ revoked: true });
    const last = seen.at(-1)!;
    expect(new URLSearchParams(last.body).get('token')).toBe(credentials.refreshToken);
    expect(new URLSearchParams(last.body).get('token_type_hint')).toBe('refresh_token');
    const basic = Buffer.from('client-1:client-secret-canary').toString('base64');
    expect(last.headers.authorization).toBe(`Basic ${basic}`);
    expect(derived).toEqual([basic, encodeURIComponent(credentials.refreshToken)]);
  });

  it('calls 5xx and 429 answers and a refused connection transient, a 4xx OAuth error final, and names no secret', async () => {
    answer = { status: 503, body: '{"error":"temporarily_unavailable"}' };
    expect(await revoke()).toMatchObject({ revoked: false, transient: true });
    answer = { status: 429, body: '' };
    expect(await revoke()).toMatchObject({ revoked: false, transient: true });
    answer = { status: 401, body: '{"error":"invalid_client"}' };
    const refused = await revoke();
    expect(refused).toEqual({ revoked: false, transient: false, reason: expect.stringContaining('HTTP 401 (invalid_client)') });
    const closed = await revokeRefreshToken({ token_endpoint: 'http://127.0.0.1:9/token', revocation_endpoint: 'http://127.0.0.1:9/revoke' }, credentials, { egress, signal: new AbortController().signal, onDerived: () => {} });
    expect(closed).toMatchObject({ revoked: false, transient: true });
    for (const r of [refused, closed]) expect(JSON.stringify(r)).not.toMatch(/canary/);
  });

  it('refuses, without a request, a declaration that names no revocation endpoint', async () => {
    const before = seen.length;
    expect(await revokeRefreshToken({ token_endpoint: `${base}/token` }, credentials, { egress, signal: new AbortController().signal, onDerived: () => {} })).toMatchObject({ revoked: false, transient: false });
    expect(seen).toHaveLength(before);
  });
});

describe('exchangeAuthorizationCode (RFC 6749 4.1.3 with PKCE)', () => {
  let server: Server;
  let base = '';
  let answer: { status: number; body: string } = { status: 200, body: '' };
  const seen: { headers: IncomingMessage['headers']; body: string }[] = [];
  const signal = new AbortController().signal;
  const credentials = { clientId: 'client-1', clientSecret: 'client-secret-canary' };
  const grant = { code: 'code/canary+1', redirectUri: 'https://app.example.com/cb', codeVerifier: 'verifier-canary-0123456789-0123456789-abcdef' };

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('posts the code, the redirect URI and the verifier with the client as HTTP Basic, and tells every derived value first', async () => {
    answer = { status: 200, body: JSON.stringify({ access_token: 'at-canary', refresh_token: 'rt-canary', token_type: 'Bearer', expires_in: 120 }) };
    const derived: string[] = [];
    const tokens = await exchangeAuthorizationCode({ token_endpoint: `${base}/token` }, credentials, grant, { egress: createEgressPolicy({ allow: ['127.0.0.0/8'] }), signal, onDerived: (v) => derived.push(v) });
    expect(tokens).toEqual({ accessToken: 'at-canary', refreshToken: 'rt-canary', expiresInSeconds: 120 });
    const form = new URLSearchParams(seen.at(-1)!.body);
    expect(Object.fromEntries(form)).toEqual({ grant_type: 'authorization_code', code: grant.code, redirect_uri: grant.redirectUri, code_verifier: grant.codeVerifier, client_id: 'client-1' });
    const basic = Buffer.from('client-1:client-secret-canary').toString('base64');
    expect(seen.at(-1)!.headers.authorization).toBe(`Basic ${basic}`);
    expect(derived).toEqual(expect.arrayContaining([basic, encodeURIComponent(grant.code), encodeURIComponent(grant.codeVerifier)]));
  });

  it('reports a refused code as invalid_grant', async () => {
    answer = { status: 400, body: '{"error":"invalid_grant"}' };
    await expect(exchangeAuthorizationCode({ token_endpoint: `${base}/token` }, credentials, grant, { egress: createEgressPolicy({ allow: ['127.0.0.0/8'] }), signal, onDerived: () => {} })).rejects.toBeInstanceOf(InvalidGrantError);
  });

  it('sends nothing to a token endpoint the egress policy refuses', async () => {
    const before = seen.length;
    await expect(exchangeAuthorizationCode({ token_endpoint: `${base}/token` }, credentials, grant, { egress: createEgressPolicy(), signal, onDerived: () => {} })).rejects.toThrow(/egress to 127\.0\.0\.1:\d+ refused: loopback/);
    expect(seen).toHaveLength(before);
  });
});
