import { describe, expect, it } from 'vitest';
import { isCofferError } from '@coffer/contracts';
import { checkOAuthDeclaration, oauthDeclarationJson } from './oauth-declaration';

const secret = { type: 'string', airbyte_secret: true };
const spec = (oauth: unknown) => ({
  type: 'object',
  properties: { client_id: secret, client_secret: secret, refresh_token: secret, access_token: secret, token_expiry_date: secret },
  'x-coffer-oauth': oauth,
});
const fieldOf = (fn: () => void) => {
  try {
    fn();
  } catch (err) {
    if (isCofferError(err) && err.code === 'invalid_argument') return err.details?.[0]?.field;
    throw err;
  }
  return undefined;
};

describe('OAuth declaration of a connector spec', () => {
  it('accepts a spec without one, and a complete declaration', () => {
    expect(fieldOf(() => checkOAuthDeclaration({ type: 'object' }, 'spec_json'))).toBeUndefined();
    const ok = spec({ token_endpoint: 'https://idp.example/token', revocation_endpoint: 'https://idp.example/revoke', scopes: ['read', 'offline_access'], token_endpoint_auth_method: 'client_secret_post' });
    expect(fieldOf(() => checkOAuthDeclaration(ok, 'spec_json'))).toBeUndefined();
    expect(JSON.parse(oauthDeclarationJson(ok)).token_endpoint).toBe('https://idp.example/token');
    expect(oauthDeclarationJson({ type: 'object' })).toBe('');
  });

  it('names the bad field', () => {
    expect(fieldOf(() => checkOAuthDeclaration(spec({}), 'spec_json'))).toBe('spec_json.x-coffer-oauth.token_endpoint');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'ftp://x/y' }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.token_endpoint');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'https://u:p@x/y' }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.token_endpoint');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'https://x/t', revocation_endpoint: 'javascript:alert(1)' }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.revocation_endpoint');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'https://x/t', revocation_endpoint: 'https://u:p@x/revoke' }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.revocation_endpoint');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'https://x/t', scopes: 'read' }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.scopes');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'https://x/t', token_endpoint_auth_method: 'none' }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.token_endpoint_auth_method');
    expect(fieldOf(() => checkOAuthDeclaration(spec({ token_endpoint: 'https://x/t', extra: 1 }), 'spec_json'))).toBe('spec_json.x-coffer-oauth.extra');
    expect(fieldOf(() => checkOAuthDeclaration(spec([]), 'spec_json'))).toBe('spec_json.x-coffer-oauth');
    const notSecret = { ...spec({ token_endpoint: 'https://x/t' }), properties: { ...spec(null).properties, refresh_token: { type: 'string' } } };
    expect(fieldOf(() => checkOAuthDeclaration(notSecret, 'spec_json'))).toBe('spec_json.properties.refresh_token');
  });
});
