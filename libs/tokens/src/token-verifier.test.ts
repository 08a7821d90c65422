import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { CofferError } from '@coffer/contracts';
import { TOKEN_TYPES } from './claims';
import { createRevocationList } from './revocation-list';
import { createTokenVerifier, type TokenVerifierOptions } from './token-verifier';

const ISSUER = 'coffer-auth';
const AUDIENCE = 'secrets';
const NOW = new Date('2030-01-01T00:00:00Z');
const nowSec = Math.floor(NOW.getTime() / 1000);

interface TestKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function makeKey(kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' };
  return { kid, privateKey, publicJwk };
}

function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

let key: TestKey;
let otherKey: TestKey;

beforeAll(async () => {
  key = await makeKey('k1');
  otherKey = await makeKey('k2');
});

function claims(overrides: JWTPayload = {}): JWTPayload {
  return { iss: ISSUER, aud: AUDIENCE, sub: 'config-client', role: 'config', jti: 'tok-1', iat: nowSec, nbf: nowSec, exp: nowSec + 600, ...overrides };
}

async function sign(payload: JWTPayload = claims(), header: Record<string, unknown> = {}, signer: TestKey = key): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: TOKEN_TYPES.service, ...header }).sign(signer.privateKey);
}

function verifier(overrides: Partial<TokenVerifierOptions> = {}, keys: () => JWK[] = () => [key.publicJwk]) {
  const fetchJwks = vi.fn(async () => ({ keys: keys() }));
  const v = createTokenVerifier({ issuer: ISSUER, audience: AUDIENCE, fetchJwks, clock: () => NOW, ...overrides });
  return { verify: v.verify, fetchJwks };
}

async function rejection(promise: Promise<unknown>): Promise<CofferError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CofferError);
  const coffer = err as CofferError;
  expect(coffer.code).toBe('unauthenticated');
  expect(coffer.message).toMatch(/^invalid token: /);
  return coffer;
}

describe('createTokenVerifier', () => {
  it('accepts a valid service token and returns its principal', async () => {
    const { verify } = verifier();
    const principal = await verify(await sign());
    expect(principal).toEqual({
      subject: 'config-client',
      kind: 'service',
      tokenType: TOKEN_TYPES.service,
      role: 'config',
      tokenId: 'tok-1',
      issuedAt: NOW,
      expiresAt: new Date((nowSec + 600) * 1000),
    });
  });

  it('tolerates small clock skew but not more', async () => {
    const { verify } = verifier();
    await expect(verify(await sign(claims({ exp: nowSec - 10 })))).resolves.toBeDefined();
    await rejection(verify(await sign(claims({ exp: nowSec - 31 }))));
  });

  it('rejects an expired token', async () => {
    const { verify } = verifier();
    const err = await rejection(verify(await sign(claims({ iat: nowSec - 3600, nbf: nowSec - 3600, exp: nowSec - 600 }))));
    expect(err.message).toBe('invalid token: expired');
  });

  it('rejects a token whose nbf is in the future', async () => {
    const { verify } = verifier();
    const err = await rejection(verify(await sign(claims({ nbf: nowSec + 300 }))));
    expect(err.message).toContain('nbf');
  });

  it('rejects a token whose iat is in the future', async () => {
    const { verify } = verifier();
    await rejection(verify(await sign(claims({ iat: nowSec + 300 }))));
  });

  it('rejects a wrong issuer', async () => {
    const { verify } = verifier();
    const err = await rejection(verify(await sign(claims({ iss: 'evil-auth' }))));
    expect(err.message).toContain('iss');
  });

  it('rejects a wrong audience', async () => {
    const { verify } = verifier();
    const err = await rejection(verify(await sign(claims({ aud: 'config' }))));
    expect(err.message).toContain('aud');
  });

  it('rejects a wrong or missing typ', async () => {
    const { verify } = verifier();
    expect((await rejection(verify(await sign(claims(), { typ: 'JWT' })))).message).toBe('invalid token: unexpected typ');
    expect((await rejection(verify(await sign(claims(), { typ: undefined })))).message).toBe('invalid token: unexpected typ');
  });

  it('accepts other kinds only when configured, each with its own claims', async () => {
    const app = claims({ sub: 'app-1', azp: 'app-1', org: 'org-1', role: 'org_admin' });
    await rejection(verifier().verify(await sign(app, { typ: TOKEN_TYPES.application })));
    const { verify } = verifier({ acceptedKinds: ['service', 'application', 'scoped', 'widget'] });
    await expect(verify(await sign(app, { typ: TOKEN_TYPES.application }))).resolves.toMatchObject({
      kind: 'application',
      organizationId: 'org-1',
      applicationId: 'app-1',
    });
    const scoped = claims({ sub: 'user-7', azp: 'app-1', org: 'org-1', ws: 'ws-a', ext: 'user-7', role: 'workspace_editor' });
    await expect(verify(await sign(scoped, { typ: TOKEN_TYPES.scoped }))).resolves.toMatchObject({ kind: 'scoped', workspaceId: 'ws-a', externalUserId: 'user-7' });
    const widget = { ...scoped, origin: 'https://app.example.com', pjti: 'scoped-jti' };
    await expect(verify(await sign(widget, { typ: TOKEN_TYPES.widget }))).resolves.toMatchObject({ kind: 'widget', origin: 'https://app.example.com', parentTokenId: 'scoped-jti' });
    expect((await rejection(verify(await sign({ ...widget, pjti: undefined }, { typ: TOKEN_TYPES.widget })))).message).toBe('invalid token: pjti claim check failed');
    // Each kind's own claims are required, and roles do not cross kinds.
    expect((await rejection(verify(await sign({ ...scoped, ws: undefined }, { typ: TOKEN_TYPES.scoped })))).message).toBe('invalid token: ws claim check failed');
    expect((await rejection(verify(await sign(scoped, { typ: TOKEN_TYPES.widget })))).message).toBe('invalid token: origin claim check failed');
    expect((await rejection(verify(await sign({ ...app, org: undefined }, { typ: TOKEN_TYPES.application })))).message).toBe('invalid token: org claim check failed');
    expect((await rejection(verify(await sign({ ...app, azp: 'app-2' }, { typ: TOKEN_TYPES.application })))).message).toBe('invalid token: azp claim check failed');
    expect((await rejection(verify(await sign({ ...scoped, role: 'org_admin' }, { typ: TOKEN_TYPES.scoped })))).message).toBe('invalid token: role claim check failed');
    expect((await rejection(verify(await sign({ ...app, role: 'operator' }, { typ: TOKEN_TYPES.application })))).message).toBe('invalid token: role claim check failed');
    expect((await rejection(verify(await sign(claims({ role: 'org_admin' }))))).message).toBe('invalid token: role claim check failed');
  });

  it('refuses revoked tokens and tokens of revoked identities issued before the revocation', async () => {
    const revocations = createRevocationList(() => NOW);
    const { verify } = verifier({ revocations, acceptedKinds: ['service', 'scoped'] });
    await expect(verify(await sign())).resolves.toBeDefined();
    revocations.revokeToken('tok-1', new Date((nowSec + 600) * 1000));
    expect((await rejection(verify(await sign()))).message).toBe('invalid token: revoked');
    await expect(verify(await sign(claims({ jti: 'tok-2' })))).resolves.toBeDefined();
    revocations.revokeIdentity('config-client', NOW);
    await rejection(verify(await sign(claims({ jti: 'tok-3' }))));
    // Tokens minted from a disabled application are refused through their azp.
    const scoped = claims({ sub: 'user-7', azp: 'app-1', org: 'org-1', ws: 'ws-a', role: 'workspace_reader', jti: 'tok-4' });
    await expect(verify(await sign(scoped, { typ: TOKEN_TYPES.scoped }))).resolves.toBeDefined();
    revocations.revokeIdentity('app-1', NOW);
    await rejection(verify(await sign(scoped, { typ: TOKEN_TYPES.scoped })));
  });

  it('answers unavailable, not a verdict, while the revocation check says its list is not current', async () => {
    let current = false;
    const list = createRevocationList(() => NOW);
    const revocations = {
      isRevoked: list.isRevoked,
      assertCurrent() {
        if (!current) throw new CofferError('unavailable', 'revocation list not yet loaded');
      },
    };
    const v = createTokenVerifier({ issuer: ISSUER, audience: AUDIENCE, fetchJwks: async () => ({ keys: [key.publicJwk] }), clock: () => NOW, revocations });
    await expect(v.verify(await sign())).rejects.toMatchObject({ code: 'unavailable', message: 'revocation list not yet loaded' });
    expect(() => v.isRevoked!({ tokenId: 'x509:f', subject: 'config', issuedAt: NOW })).toThrow('revocation list not yet loaded');
    // A token that fails on its own merits still gets its own answer.
    expect((await rejection(v.verify(await sign(claims({ iss: 'someone-else' }))))).code).toBe('unauthenticated');
    current = true;
    await expect(v.verify(await sign())).resolves.toMatchObject({ tokenId: 'tok-1' });
  });

  it('refuses a widget token once the scoped token it was minted from (its pjti) is revoked', async () => {
    const revocations = createRevocationList(() => NOW);
    const { verify } = verifier({ revocations, acceptedKinds: ['scoped', 'widget'] });
    const widget = claims({ sub: 'user-7', azp: 'app-1', org: 'org-1', ws: 'ws-a', role: 'workspace_editor', jti: 'widget-1', pjti: 'scoped-1', origin: 'https://app.example.com' });
    await expect(verify(await sign(widget, { typ: TOKEN_TYPES.widget }))).resolves.toBeDefined();
    revocations.revokeToken('scoped-1', new Date((nowSec + 600) * 1000));
    expect((await rejection(verify(await sign(widget, { typ: TOKEN_TYPES.widget })))).message).toBe('invalid token: revoked');
  });

  it('rejects missing required claims and unknown roles', async () => {
    const { verify } = verifier();
    for (const claim of ['exp', 'iat', 'jti', 'sub'] as const) {
      const payload = claims();
      delete payload[claim];
      await rejection(verify(await sign(payload)));
    }
    await rejection(verify(await sign(claims({ role: 'admin' }))));
    await rejection(verify(await sign(claims({ role: undefined }))));
    await rejection(verify(await sign(claims({ role: 'constructor' }))));
  });

  it('rejects alg none', async () => {
    const { verify } = verifier();
    const token = `${b64url({ alg: 'none', kid: 'k1', typ: TOKEN_TYPES.service })}.${b64url(claims())}.`;
    const err = await rejection(verify(token));
    expect(err.message).toBe('invalid token: algorithm not allowed');
  });

  it('rejects HS256 signed with the public key bytes (key confusion)', async () => {
    const { verify } = verifier();
    for (const secret of [Buffer.from(key.publicJwk.x!, 'base64url'), Buffer.from(JSON.stringify(key.publicJwk))]) {
      const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: 'k1', typ: TOKEN_TYPES.service }).sign(secret);
      const err = await rejection(verify(token));
      expect(err.message).toBe('invalid token: algorithm not allowed');
    }
  });

  it('rejects a token that brings its own key (jwk, jku, x5u, x5c headers)', async () => {
    const { verify, fetchJwks } = verifier();
    // Signed by an attacker key that the token itself presents.
    const jwkToken = await sign(claims(), { jwk: otherKey.publicJwk, kid: 'k2' }, otherKey);
    expect((await rejection(verify(jwkToken))).message).toBe('invalid token: forbidden "jwk" header');
    // Even a token signed by the trusted key is refused when it carries such a header.
    for (const [name, value] of [
      ['jku', 'https://evil.example/jwks.json'],
      ['x5u', 'https://evil.example/cert.pem'],
      ['x5c', ['MIIB']],
    ] as const) {
      expect((await rejection(verify(await sign(claims(), { [name]: value })))).message).toBe(`invalid token: forbidden "${name}" header`);
    }
    expect(fetchJwks).not.toHaveBeenCalled();
  });

  it('rejects a tampered payload', async () => {
    const { verify } = verifier();
    const [header, , signature] = (await sign()).split('.');
    const forged = `${header}.${b64url(claims({ role: 'sync-worker' }))}.${signature}`;
    const err = await rejection(verify(forged));
    expect(err.message).toBe('invalid token: bad signature');
  });

  it('rejects a token signed by a key that is not in the JWKS', async () => {
    const { verify } = verifier();
    await rejection(verify(await sign(claims(), { kid: 'k1' }, otherKey)));
  });

  it('rejects garbage without echoing it', async () => {
    const { verify } = verifier();
    for (const token of ['', 'abc', 'a.b.c', 'eyJhbGciOiJFZERTQSJ9.e30.', 'x'.repeat(10_000)]) {
      const err = await rejection(verify(token));
      if (token.length > 3) expect(err.message).not.toContain(token);
    }
  });

  it('fails closed when the JWKS cannot be fetched', async () => {
    const fetchJwks = vi.fn(async (): Promise<{ keys: JWK[] }> => {
      throw new Error('connect ECONNREFUSED');
    });
    const v = createTokenVerifier({ issuer: ISSUER, audience: AUDIENCE, fetchJwks, clock: () => NOW });
    const err = await rejection(v.verify(await sign()));
    expect(err.message).toBe('invalid token: signing keys unavailable');
  });

  it('caches the JWKS for cacheTtlMs and refetches after it', async () => {
    let now = NOW;
    const { verify, fetchJwks } = verifier({ clock: () => now, cacheTtlMs: 60_000 });
    const token = await sign();
    await verify(token);
    await verify(token);
    expect(fetchJwks).toHaveBeenCalledTimes(1);
    now = new Date(NOW.getTime() + 61_000);
    await verify(await sign(claims({ iat: nowSec + 61, nbf: nowSec + 61, exp: nowSec + 600 })));
    expect(fetchJwks).toHaveBeenCalledTimes(2);
  });

  it('keeps using the cached keys when a refresh fails', async () => {
    let now = NOW;
    let fail = false;
    const fetchJwks = vi.fn(async () => {
      if (fail) throw new Error('auth down');
      return { keys: [key.publicJwk] };
    });
    const v = createTokenVerifier({ issuer: ISSUER, audience: AUDIENCE, fetchJwks, clock: () => now, cacheTtlMs: 60_000 });
    await v.verify(await sign());
    fail = true;
    now = new Date(NOW.getTime() + 61_000);
    await expect(v.verify(await sign(claims({ iat: nowSec + 61 })))).resolves.toBeDefined();
    expect(fetchJwks).toHaveBeenCalledTimes(2);
  });

  it('refetches the JWKS on an unknown kid, at most once per interval', async () => {
    let now = NOW;
    let published = [key.publicJwk];
    const { verify, fetchJwks } = verifier({ clock: () => now }, () => published);
    await verify(await sign());
    expect(fetchJwks).toHaveBeenCalledTimes(1);

    // A rotated key appears in the JWKS; the first token with its kid triggers one refetch.
    published = [key.publicJwk, otherKey.publicJwk];
    now = new Date(NOW.getTime() + 11_000);
    await expect(verify(await sign(claims(), {}, otherKey))).resolves.toMatchObject({ subject: 'config-client' });
    expect(fetchJwks).toHaveBeenCalledTimes(2);

    // Made-up kids within the interval do not reach the JWKS endpoint.
    const stranger = await makeKey('k-unknown');
    for (let i = 0; i < 5; i++) {
      expect((await rejection(verify(await sign(claims(), {}, stranger)))).message).toBe('invalid token: unknown signing key');
    }
    expect(fetchJwks).toHaveBeenCalledTimes(2);

    now = new Date(NOW.getTime() + 22_000);
    await rejection(verify(await sign(claims(), {}, stranger)));
    expect(fetchJwks).toHaveBeenCalledTimes(3);
  });

  it('shares one JWKS fetch between concurrent first calls', async () => {
    const { verify, fetchJwks } = verifier();
    const token = await sign();
    await Promise.all([verify(token), verify(token), verify(token)]);
    expect(fetchJwks).toHaveBeenCalledTimes(1);
  });

  describe('verified tokens kept for the next call', () => {
    it('answers a known token again without its signature check, yet still refuses it once revoked or expired', async () => {
      let now = NOW;
      const revocations = createRevocationList(() => now);
      const { verify } = verifier({ revocations, clock: () => now });
      const token = await sign(claims({ exp: nowSec + 60 }));
      const first = await verify(token);
      // A second answer is an equal principal, not the cached object (a caller changing it changes nothing).
      (first as { subject: string }).subject = 'changed by a caller';
      expect((await verify(token)).subject).toBe('config-client');
      revocations.revokeToken('tok-1', new Date((nowSec + 60) * 1000));
      expect((await rejection(verify(token))).message).toBe('invalid token: revoked');
      const other = await sign(claims({ jti: 'tok-2', exp: nowSec + 60 }));
      await expect(verify(other)).resolves.toBeDefined();
      now = new Date(NOW.getTime() + 60_000 + 31_000);
      expect((await rejection(verify(other))).message).toMatch(/^invalid token: /);
    });

    it('drops what it knows when the key set is refetched: a token of a key no longer published is refused', async () => {
      let now = NOW;
      let published = [key.publicJwk];
      const { verify, fetchJwks } = verifier({ clock: () => now, cacheTtlMs: 60_000 }, () => published);
      const token = await sign();
      await expect(verify(token)).resolves.toBeDefined();
      await expect(verify(token)).resolves.toBeDefined();
      expect(fetchJwks).toHaveBeenCalledTimes(1);
      // The key is withdrawn; once the key set is refetched, the token verified under the old set is checked again.
      published = [otherKey.publicJwk];
      now = new Date(NOW.getTime() + 61_000);
      await rejection(verify(token));
      expect(fetchJwks).toHaveBeenCalledTimes(2);
    });

    it('keeps at most the configured number of tokens, or none', async () => {
      const { verify } = verifier({ verifiedCacheEntries: 0 });
      const token = await sign();
      await expect(verify(token)).resolves.toBeDefined();
      await expect(verify(token)).resolves.toBeDefined();
      const bounded = verifier({ verifiedCacheEntries: 2 });
      for (const jti of ['a', 'b', 'c', 'a']) await expect(bounded.verify(await sign(claims({ jti })))).resolves.toMatchObject({ tokenId: jti });
    });
  });
});
