import { describe, expect, it } from 'vitest';
import { isCofferError } from '@coffer/contracts';
import { checkProxyDeclaration, proxyDeclarationJson } from './proxy-declaration';

const properties = {
  url: { type: 'string' },
  api_token: { type: 'string', airbyte_secret: true },
  username: { type: 'string' },
  password: { type: 'string', airbyte_secret: true },
};
const spec = (proxy: unknown, extra: Record<string, unknown> = {}) => ({ type: 'object', properties, 'x-coffer-proxy': proxy, ...extra });

function fieldOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    if (isCofferError(err) && err.code === 'invalid_argument') return err.details[0]?.field;
    throw err;
  }
  return undefined;
}

describe('checkProxyDeclaration', () => {
  it('accepts each kind of credential injection', () => {
    for (const auth of [
      { type: 'bearer', token_field: 'api_token' },
      { type: 'api_key_header', header: 'X-Api-Key', key_field: 'api_token', prefix: 'Token ' },
      { type: 'basic', username_field: 'username', password_field: 'password' },
    ]) {
      expect(fieldOf(() => checkProxyDeclaration(spec({ base_url: 'https://api.example.com/v1', auth }), 'spec_json'))).toBeUndefined();
    }
    expect(fieldOf(() => checkProxyDeclaration(spec({ base_url: 'https://api.example.com', auth: { type: 'oauth2' } }, { 'x-coffer-oauth': { token_endpoint: 'https://id.example.com/token' } }), 'spec_json'))).toBeUndefined();
    expect(proxyDeclarationJson({ type: 'object' })).toBe('');
  });

  it.each([
    ['not an object', 'x', 'spec_json.x-coffer-proxy'],
    ['an unknown key', { base_url: 'https://a.example', auth: { type: 'bearer', token_field: 'api_token' }, extra: 1 }, 'spec_json.x-coffer-proxy.extra'],
    ['a base URL with credentials', { base_url: 'https://u:p@a.example', auth: { type: 'bearer', token_field: 'api_token' } }, 'spec_json.x-coffer-proxy.base_url'],
    ['a base URL with a query', { base_url: 'https://a.example/?k=1', auth: { type: 'bearer', token_field: 'api_token' } }, 'spec_json.x-coffer-proxy.base_url'],
    ['a base URL that is not http', { base_url: 'ftp://a.example', auth: { type: 'bearer', token_field: 'api_token' } }, 'spec_json.x-coffer-proxy.base_url'],
    ['no auth', { base_url: 'https://a.example' }, 'spec_json.x-coffer-proxy.auth'],
    ['an unknown auth type', { base_url: 'https://a.example', auth: { type: 'digest' } }, 'spec_json.x-coffer-proxy.auth.type'],
    ['a token field that is not secret', { base_url: 'https://a.example', auth: { type: 'bearer', token_field: 'url' } }, 'spec_json.x-coffer-proxy.auth.token_field'],
    ['a token field the spec lacks', { base_url: 'https://a.example', auth: { type: 'bearer', token_field: 'nope' } }, 'spec_json.x-coffer-proxy.auth.token_field'],
    ['a reserved API-key header', { base_url: 'https://a.example', auth: { type: 'api_key_header', header: 'Host', key_field: 'api_token' } }, 'spec_json.x-coffer-proxy.auth.header'],
    ['a basic password that is not secret', { base_url: 'https://a.example', auth: { type: 'basic', username_field: 'username', password_field: 'username' } }, 'spec_json.x-coffer-proxy.auth.password_field'],
    ['oauth2 without x-coffer-oauth', { base_url: 'https://a.example', auth: { type: 'oauth2' } }, 'spec_json.x-coffer-proxy.auth.type'],
  ])('refuses %s, naming the field', (_kind, proxy, field) => {
    expect(fieldOf(() => checkProxyDeclaration(spec(proxy), 'spec_json'))).toBe(field);
  });
});
