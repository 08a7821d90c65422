import { CofferError } from '@coffer/contracts';

/** The spec keyword under which a connector definition declares OAuth 2.0. */
export const OAUTH_KEYWORD = 'x-coffer-oauth';

const URL_FIELDS = ['authorization_endpoint', 'token_endpoint', 'revocation_endpoint'] as const;
const AUTH_METHODS = ['client_secret_basic', 'client_secret_post'];
// The config fields an OAuth credential keeps, each of them a secret field of the spec.
const CREDENTIAL_FIELDS = ['client_id', 'client_secret', 'refresh_token', 'access_token', 'token_expiry_date'];

/**
 * Checks the OAuth 2.0 declaration of a spec, when it has one: http(s) endpoints (the token endpoint
 * required), scopes as a list of strings, a known client authentication method, and every credential
 * field declared as a top-level secret property. Throws `invalid_argument` naming the field.
 */
export function checkOAuthDeclaration(spec: Record<string, unknown>, field: string): void {
  const declared = spec[OAUTH_KEYWORD];
  if (declared === undefined) return;
  const at = `${field}.${OAUTH_KEYWORD}`;
  const bad = (path: string, reason: string) => new CofferError('invalid_argument', `${path} ${reason}`, [{ field: path, reason }]);
  if (declared === null || typeof declared !== 'object' || Array.isArray(declared)) throw bad(at, 'must be an object');
  const d = declared as Record<string, unknown>;
  for (const key of Object.keys(d)) {
    if (![...URL_FIELDS, 'scopes', 'token_endpoint_auth_method'].includes(key)) throw bad(`${at}.${key}`, 'is not a known field');
  }
  if (d.token_endpoint === undefined) throw bad(`${at}.token_endpoint`, 'is required');
  for (const key of URL_FIELDS) {
    const v = d[key];
    if (v === undefined) continue;
    let url: URL | undefined;
    try {
      url = typeof v === 'string' && v.length <= 2048 ? new URL(v) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.hash) throw bad(`${at}.${key}`, 'must be an http or https URL without credentials or fragment');
  }
  if (d.scopes !== undefined && !(Array.isArray(d.scopes) && d.scopes.length <= 100 && d.scopes.every((s) => typeof s === 'string' && /^[\x21\x23-\x5b\x5d-\x7e]{1,200}$/.test(s)))) {
    throw bad(`${at}.scopes`, 'must be a list of scope tokens');
  }
  if (d.token_endpoint_auth_method !== undefined && !AUTH_METHODS.includes(d.token_endpoint_auth_method as string)) throw bad(`${at}.token_endpoint_auth_method`, `must be one of ${AUTH_METHODS.join(', ')}`);
  const properties = (spec.properties ?? {}) as Record<string, { airbyte_secret?: unknown } | undefined>;
  for (const name of CREDENTIAL_FIELDS) {
    if (properties[name]?.airbyte_secret !== true) throw bad(`${field}.properties.${name}`, `must be declared with airbyte_secret: true when the spec declares ${OAUTH_KEYWORD}`);
  }
}

/** The declaration as the sync plan carries it (JSON), or empty. */
export function oauthDeclarationJson(spec: unknown): string {
  const declared = spec && typeof spec === 'object' ? (spec as Record<string, unknown>)[OAUTH_KEYWORD] : undefined;
  return declared === undefined ? '' : JSON.stringify(declared);
}
