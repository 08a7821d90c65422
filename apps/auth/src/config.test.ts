import { describe, expect, it } from 'vitest';
import { loadAuthConfig } from './config';

const identities = JSON.stringify([{ clientId: 'config', clientSecret: 'a-secret-of-24-characters', role: 'config' }]);
const key = JSON.stringify({ kty: 'OKP', crv: 'Ed25519', d: 'ZA', x: 'eA', kid: 'k1' });

describe('auth configuration', () => {
  it('checks the signing key with every other setting, in one pass, never printing it', () => {
    const bad = JSON.stringify({ kty: 'RSA', d: 'secret-material-d', kid: 'k1' });
    let message = '';
    try {
      loadAuthConfig({ AUTH_SIGNING_KEY: bad, AUTH_SCOPED_TOKEN_TTL_SECONDS: '99999' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/DATABASE_URL: required/);
    expect(message).toMatch(/AUTH_SIGNING_KEY: an Ed25519 private JWK needs crv, x/);
    expect(message).toMatch(/AUTH_SERVICE_IDENTITIES: required/);
    expect(message).toMatch(/AUTH_SCOPED_TOKEN_TTL_SECONDS/);
    expect(message).not.toContain('secret-material-d');
    expect(() => loadAuthConfig({ DATABASE_URL: 'postgres://h/db', AUTH_SERVICE_IDENTITIES: identities, AUTH_SIGNING_KEY: 'not json' })).toThrow(/AUTH_SIGNING_KEY: not valid JSON/);
    expect(() => loadAuthConfig({ DATABASE_URL: 'postgres://h/db', AUTH_SERVICE_IDENTITIES: identities, AUTH_SIGNING_KEY: key.replace('Ed25519', 'X25519') })).toThrow(/must be an Ed25519 key/);
  });

  it('accepts a well-formed configuration with the default lifetimes', () => {
    const c = loadAuthConfig({ DATABASE_URL: 'postgres://h/db', AUTH_SERVICE_IDENTITIES: identities, AUTH_SIGNING_KEY: key });
    expect(c).toMatchObject({ AUTH_SERVICE_TOKEN_TTL_SECONDS: 900, AUTH_SCOPED_TOKEN_TTL_SECONDS: 1200, COFFER_ENV: 'production' });
  });
});
