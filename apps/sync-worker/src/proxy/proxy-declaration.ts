import { ConnectorError, parseObject } from '../connectors/connector';

/** How a proxied request carries the actor's credential, as the definition's `x-coffer-proxy.auth` declares. */
export type ProxyAuth =
  | { type: 'bearer'; tokenField: string }
  | { type: 'api_key_header'; header: string; keyField: string; prefix: string }
  | { type: 'basic'; usernameField: string; passwordField: string }
  | { type: 'oauth2' };

/** A definition's `x-coffer-proxy` declaration, as the worker uses it. */
export interface ProxyDeclaration {
  baseUrl: string;
  auth: ProxyAuth;
}

const str = (v: unknown, what: string): string => {
  if (typeof v !== 'string' || v === '') throw new ConnectorError(`the proxy declaration's ${what} is missing`);
  return v;
};

/**
 * Reads the declaration config checked when the definition was registered; anything unexpected is a
 * ConnectorError (config serves only checked declarations, so this is a safeguard, not validation).
 */
export function parseProxyDeclaration(json: string): ProxyDeclaration {
  const d = parseObject(json, 'the proxy declaration');
  const baseUrl = str(d.base_url, 'base_url');
  const auth = d.auth && typeof d.auth === 'object' && !Array.isArray(d.auth) ? (d.auth as Record<string, unknown>) : undefined;
  if (!auth) throw new ConnectorError("the proxy declaration's auth is missing");
  switch (auth.type) {
    case 'bearer':
      return { baseUrl, auth: { type: 'bearer', tokenField: str(auth.token_field, 'auth.token_field') } };
    case 'api_key_header':
      return {
        baseUrl,
        auth: { type: 'api_key_header', header: str(auth.header, 'auth.header').toLowerCase(), keyField: str(auth.key_field, 'auth.key_field'), prefix: typeof auth.prefix === 'string' ? auth.prefix : '' },
      };
    case 'basic':
      return { baseUrl, auth: { type: 'basic', usernameField: str(auth.username_field, 'auth.username_field'), passwordField: str(auth.password_field, 'auth.password_field') } };
    case 'oauth2':
      return { baseUrl, auth: { type: 'oauth2' } };
    default:
      throw new ConnectorError("the proxy declaration's auth.type is not known");
  }
}

/**
 * The headers that carry the credential, and every value derived from a secret on the way (the
 * `user:password` pair a Basic header encodes, the header values themselves), to register with the
 * redactor before anything is sent.
 */
export function credentialHeaders(auth: ProxyAuth, config: Record<string, unknown>): { headers: Record<string, string>; derived: string[] } {
  const field = (name: string) => {
    const v = config[name];
    if (typeof v !== 'string' || v === '') throw new ConnectorError(`the config field ${name} the proxy declaration names is empty`);
    return v;
  };
  switch (auth.type) {
    case 'bearer': {
      const value = `Bearer ${field(auth.tokenField)}`;
      return { headers: { authorization: value }, derived: [value] };
    }
    case 'oauth2': {
      const value = `Bearer ${field('access_token')}`;
      return { headers: { authorization: value }, derived: [value] };
    }
    case 'api_key_header': {
      const value = `${auth.prefix}${field(auth.keyField)}`;
      return { headers: { [auth.header]: value }, derived: [value] };
    }
    case 'basic': {
      const pair = `${field(auth.usernameField)}:${field(auth.passwordField)}`;
      const encoded = Buffer.from(pair, 'utf8').toString('base64');
      return { headers: { authorization: `Basic ${encoded}` }, derived: [pair, encoded, `Basic ${encoded}`] };
    }
  }
}
