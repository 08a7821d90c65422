import { CofferError } from '@coffer/contracts';
import { OAUTH_KEYWORD } from './oauth-declaration';

/** The spec keyword under which a connector definition declares its API for ProxyRequest. */
export const PROXY_KEYWORD = 'x-coffer-proxy';

const AUTH_TYPES = ['bearer', 'api_key_header', 'basic', 'oauth2'] as const;
// Per type: the config fields it names, and whether each must be a secret field of the spec.
const AUTH_FIELDS: Record<(typeof AUTH_TYPES)[number], { name: string; secret: boolean }[]> = {
  bearer: [{ name: 'token_field', secret: true }],
  api_key_header: [{ name: 'key_field', secret: true }],
  basic: [{ name: 'username_field', secret: false }, { name: 'password_field', secret: true }],
  oauth2: [],
};
const AUTH_KEYS: Record<(typeof AUTH_TYPES)[number], string[]> = {
  bearer: ['type', 'token_field'],
  api_key_header: ['type', 'header', 'key_field', 'prefix'],
  basic: ['type', 'username_field', 'password_field'],
  oauth2: ['type'],
};
// Headers an API key may not travel in: the proxy sets or refuses them for its own reasons.
const RESERVED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'cookie', 'accept-encoding', 'proxy-authorization', 'proxy-connection', 'expect']);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$/;

/**
 * Checks the proxy declaration of a spec, when it has one: `base_url` an http(s) URL without
 * credentials, query or fragment; `auth` one of bearer (`token_field`), api_key_header (`header`,
 * `key_field`, optional `prefix`), basic (`username_field`, `password_field`) or oauth2 (the spec's
 * OAuth credential, so `x-coffer-oauth` is required); each named field a top-level property of the
 * spec, the credential ones declared `airbyte_secret: true`. Throws `invalid_argument` naming the field.
 */
export function checkProxyDeclaration(spec: Record<string, unknown>, field: string): void {
  const declared = spec[PROXY_KEYWORD];
  if (declared === undefined) return;
  const at = `${field}.${PROXY_KEYWORD}`;
  const bad = (path: string, reason: string) => new CofferError('invalid_argument', `${path} ${reason}`, [{ field: path, reason }]);
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(declared)) throw bad(at, 'must be an object');
  for (const key of Object.keys(declared)) if (key !== 'base_url' && key !== 'auth') throw bad(`${at}.${key}`, 'is not a known field');
  let url: URL | undefined;
  try {
    url = typeof declared.base_url === 'string' && declared.base_url.length <= 2048 ? new URL(declared.base_url) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search || url.hash || /[?#]/.test(declared.base_url as string)) {
    throw bad(`${at}.base_url`, 'must be an http or https URL without credentials, query or fragment');
  }
  const auth = declared.auth;
  if (!isObject(auth)) throw bad(`${at}.auth`, 'must be an object');
  const type = auth.type as (typeof AUTH_TYPES)[number];
  if (!AUTH_TYPES.includes(type)) throw bad(`${at}.auth.type`, `must be one of ${AUTH_TYPES.join(', ')}`);
  for (const key of Object.keys(auth)) if (!AUTH_KEYS[type].includes(key)) throw bad(`${at}.auth.${key}`, `is not a field of auth type ${type}`);
  const properties = isObject(spec.properties) ? (spec.properties as Record<string, { airbyte_secret?: unknown } | undefined>) : {};
  for (const { name, secret } of AUTH_FIELDS[type]) {
    const target = auth[name];
    if (typeof target !== 'string' || target === '') throw bad(`${at}.auth.${name}`, 'is required: the name of a config field');
    if (!Object.hasOwn(properties, target)) throw bad(`${at}.auth.${name}`, 'must name a top-level property of the spec');
    if (secret && properties[target]?.airbyte_secret !== true) throw bad(`${at}.auth.${name}`, 'must name a property declared with airbyte_secret: true');
  }
  if (type === 'api_key_header') {
    if (typeof auth.header !== 'string' || !TOKEN.test(auth.header)) throw bad(`${at}.auth.header`, 'must be an HTTP header name');
    if (RESERVED_HEADERS.has(auth.header.toLowerCase())) throw bad(`${at}.auth.header`, 'names a header the proxy sets itself');
    if (auth.prefix !== undefined && (typeof auth.prefix !== 'string' || !/^[\x20-\x7e]{0,50}$/.test(auth.prefix))) throw bad(`${at}.auth.prefix`, 'must be at most 50 printable characters');
  }
  if (type === 'oauth2' && spec[OAUTH_KEYWORD] === undefined) throw bad(`${at}.auth.type`, `oauth2 needs the spec to declare ${OAUTH_KEYWORD}`);
}

/** The declaration as the sync worker gets it (JSON), or empty. */
export function proxyDeclarationJson(spec: unknown): string {
  const declared = spec && typeof spec === 'object' ? (spec as Record<string, unknown>)[PROXY_KEYWORD] : undefined;
  return declared === undefined ? '' : JSON.stringify(declared);
}
