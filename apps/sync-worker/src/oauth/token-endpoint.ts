import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { EgressPolicy } from '../connectors/egress-policy';
import { withDeadline } from '../deadline';

/** What a connector definition declares under `x-coffer-oauth`. */
export interface OAuthDeclaration {
  token_endpoint: string;
  authorization_endpoint?: string;
  revocation_endpoint?: string;
  scopes?: string[];
  token_endpoint_auth_method?: 'client_secret_basic' | 'client_secret_post';
}

/** The provider refused the refresh token (RFC 6749 §5.2 `invalid_grant`): only the user can fix it. */
export class InvalidGrantError extends Error {
  constructor() {
    super('the provider refused the refresh token (invalid_grant)');
    this.name = 'InvalidGrantError';
  }
}

/** Any other failed refresh; the message names the OAuth error code or the transport failure, never a token. */
export class TokenEndpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenEndpointError';
  }
}

/** A successful token response. */
export interface TokenResponse {
  accessToken: string;
  /** Present when the provider rotated the refresh token. */
  refreshToken?: string;
  expiresInSeconds?: number;
}

const MAX_BODY = 64 * 1024;

/**
 * The request headers of a call authenticating the client as declared: HTTP Basic by default, or the
 * credentials in the form (`client_secret_post`). `onDerived` is told the Basic header's value.
 */
function clientAuthentication(
  oauth: OAuthDeclaration,
  credentials: { clientId: string; clientSecret: string },
  form: URLSearchParams,
  onDerived: (value: string) => void,
): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (oauth.token_endpoint_auth_method === 'client_secret_post') {
    form.set('client_id', credentials.clientId);
    form.set('client_secret', credentials.clientSecret);
  } else {
    const basic = Buffer.from(`${encodeURIComponent(credentials.clientId)}:${encodeURIComponent(credentials.clientSecret)}`).toString('base64');
    onDerived(basic);
    headers.authorization = `Basic ${basic}`;
  }
  return headers;
}

/**
 * The refresh_token grant (RFC 6749 §6) at the declared token endpoint, with the client
 * authenticated as declared (HTTP Basic by default), connected to the address the egress policy
 * checked. `onDerived` is told every value derived from a secret (the Basic header) before it is sent.
 */
export async function refreshAccessToken(
  oauth: OAuthDeclaration,
  credentials: { clientId: string; clientSecret: string; refreshToken: string },
  options: { egress: EgressPolicy; signal: AbortSignal; onDerived: (value: string) => void },
): Promise<TokenResponse> {
  const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credentials.refreshToken });
  options.onDerived(encodeURIComponent(credentials.refreshToken));
  return tokenRequest(oauth, credentials, form, options);
}

/**
 * The authorization_code grant (RFC 6749 §4.1.3) with the PKCE `code_verifier` (RFC 7636 §4.5) at
 * the declared token endpoint, the client authenticated as declared. `invalid_grant` (a wrong,
 * used or expired code, or a verifier that does not match) is an {@link InvalidGrantError}.
 */
export async function exchangeAuthorizationCode(
  oauth: OAuthDeclaration,
  credentials: { clientId: string; clientSecret: string },
  grant: { code: string; redirectUri: string; codeVerifier: string },
  options: { egress: EgressPolicy; signal: AbortSignal; onDerived: (value: string) => void },
): Promise<TokenResponse> {
  const form = new URLSearchParams({ grant_type: 'authorization_code', code: grant.code, redirect_uri: grant.redirectUri, code_verifier: grant.codeVerifier });
  // RFC 6749 §3.2.1: a client authenticating in the form still names itself; with Basic the header does.
  if (oauth.token_endpoint_auth_method !== 'client_secret_post') form.set('client_id', credentials.clientId);
  options.onDerived(encodeURIComponent(grant.code));
  options.onDerived(encodeURIComponent(grant.codeVerifier));
  return tokenRequest(oauth, credentials, form, options);
}

async function tokenRequest(
  oauth: OAuthDeclaration,
  credentials: { clientId: string; clientSecret: string },
  form: URLSearchParams,
  options: { egress: EgressPolicy; signal: AbortSignal; onDerived: (value: string) => void },
): Promise<TokenResponse> {
  const url = new URL(oauth.token_endpoint);
  const headers = clientAuthentication(oauth, credentials, form, options.onDerived);
  const body = form.toString();
  const { status, text } = await post(url, headers, body, options.egress, options.signal);
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new TokenEndpointError(`the token endpoint ${url.host} answered HTTP ${status} without JSON`);
  }
  const error = typeof parsed.error === 'string' && /^[a-z_]{1,64}$/.test(parsed.error) ? parsed.error : undefined;
  if (error === 'invalid_grant') throw new InvalidGrantError();
  if (status < 200 || status > 299 || error) throw new TokenEndpointError(`the token endpoint ${url.host} answered HTTP ${status}${error ? ` (${error})` : ''}`);
  if (typeof parsed.access_token !== 'string' || parsed.access_token === '') throw new TokenEndpointError(`the token endpoint ${url.host} answered without an access_token`);
  if (parsed.token_type !== undefined && String(parsed.token_type).toLowerCase() !== 'bearer') throw new TokenEndpointError(`the token endpoint ${url.host} answered an unsupported token_type`);
  return {
    accessToken: parsed.access_token,
    refreshToken: typeof parsed.refresh_token === 'string' && parsed.refresh_token !== '' ? parsed.refresh_token : undefined,
    expiresInSeconds: typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : undefined,
  };
}

/** How a revocation request ended: `transient` failures (5xx, 429, transport) are worth another attempt. */
export type RevocationResult = { revoked: true } | { revoked: false; transient: boolean; reason: string };

/**
 * RFC 7009 token revocation of a refresh token at the declared revocation endpoint, with the client
 * authenticated as for the token endpoint. A 200 means revoked (also for a token the provider no
 * longer knows, RFC 7009 §2.2). `onDerived` is told every value derived from a secret before it is sent.
 */
export async function revokeRefreshToken(
  oauth: OAuthDeclaration,
  credentials: { clientId: string; clientSecret: string; refreshToken: string },
  options: { egress: EgressPolicy; signal: AbortSignal; onDerived: (value: string) => void },
): Promise<RevocationResult> {
  if (!oauth.revocation_endpoint) return { revoked: false, transient: false, reason: 'the definition declares no revocation endpoint' };
  const url = new URL(oauth.revocation_endpoint);
  const form = new URLSearchParams({ token: credentials.refreshToken, token_type_hint: 'refresh_token' });
  const headers = clientAuthentication(oauth, credentials, form, options.onDerived);
  options.onDerived(encodeURIComponent(credentials.refreshToken));
  let answer: { status: number; text: string };
  try {
    answer = await post(url, headers, form.toString(), options.egress, options.signal, 'revocation endpoint');
  } catch (err) {
    if (options.signal.aborted) throw err;
    return { revoked: false, transient: true, reason: err instanceof TokenEndpointError ? err.message : `the request to the revocation endpoint ${url.host} failed` };
  }
  if (answer.status >= 200 && answer.status <= 299) return { revoked: true };
  let error: string | undefined;
  try {
    const parsed = JSON.parse(answer.text) as Record<string, unknown>;
    error = typeof parsed.error === 'string' && /^[a-z_]{1,64}$/.test(parsed.error) ? parsed.error : undefined;
  } catch {
    error = undefined;
  }
  const transient = answer.status >= 500 || answer.status === 429 || error === 'temporarily_unavailable';
  return { revoked: false, transient, reason: `the revocation endpoint ${url.host} answered HTTP ${answer.status}${error ? ` (${error})` : ''}` };
}

async function post(url: URL, headers: Record<string, string>, body: string, egress: EgressPolicy, signal: AbortSignal, what = 'token endpoint'): Promise<{ status: number; text: string }> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const target = await egress.resolve(url.hostname, port, `oauth ${what}`);
  const lookup: LookupFunction = (_host, opts, callback) => {
    if (opts.all) (callback as (err: null, addresses: { address: string; family: number }[]) => void)(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const deadline = withDeadline(signal, 15_000, `the ${what} did not answer in time`);
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = send(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup, signal: deadline.signal, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          res.destroy();
          reject(new TokenEndpointError(`the ${what} ${url.host} answered more than ${MAX_BODY} bytes`));
        } else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => reject(new TokenEndpointError(`reading the answer of the ${what} ${url.host} failed`)));
    });
    req.on('error', (err) => reject(new TokenEndpointError(`the request to the ${what} ${url.host} failed (${err.name})`)));
    req.end(body);
  }).finally(() => deadline.clear());
}
