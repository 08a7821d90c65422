import { CofferError } from '@coffer/contracts';

/** The bounds of a proxied request. */
export const PROXY_LIMITS = Object.freeze({
  pathChars: 2048,
  headers: 50,
  headerNameChars: 256,
  headerValueChars: 8 * 1024,
  bodyBytes: 1024 * 1024,
});

/** The HTTP methods a caller may proxy. */
export const PROXY_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/**
 * Request headers a caller may not set: the credential's own (Authorization and the declared API-key
 * header), cookies, what the worker sets itself (Host, lengths, encodings) and hop-by-hop ones.
 */
const REFUSED_REQUEST_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'cookie2',
  'host',
  'content-length',
  'transfer-encoding',
  'accept-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Printable ASCII and Latin-1, tabs and spaces; no CR, LF or NUL (no header injection).
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** One header as the caller sent it. */
export interface ProxyHeader {
  name: string;
  value: string;
}

/** A checked request: where it goes and what it carries. */
export interface CheckedProxyRequest {
  method: (typeof PROXY_METHODS)[number];
  url: URL;
  headers: ProxyHeader[];
  body: Buffer;
}

function invalid(field: string, reason: string): CofferError {
  return new CofferError('invalid_argument', `${field} ${reason}`, [{ field, reason }]);
}

/**
 * The URL `path` names under `baseUrl`, or INVALID_ARGUMENT naming `path` when it would leave it:
 * an absolute URL, `//host`, a `.` or `..` segment (plain or percent-encoded), an encoded slash or
 * backslash, a backslash, a fragment or a control character. The result is checked once more after
 * the URL parser normalised it: same origin, under the base path.
 */
export function resolveProxyPath(baseUrl: string, path: string): URL {
  const base = new URL(baseUrl);
  if (path.length > PROXY_LIMITS.pathChars) throw invalid('path', `must be at most ${PROXY_LIMITS.pathChars} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f\\#]/.test(path)) throw invalid('path', 'must not contain spaces, control characters, backslashes or a fragment');
  const q = path.indexOf('?');
  let rel = q >= 0 ? path.slice(0, q) : path;
  const query = q >= 0 ? path.slice(q) : '';
  if (rel.startsWith('/')) rel = rel.slice(1);
  if (rel.startsWith('/')) throw invalid('path', 'must be relative to the base URL (no "//host")');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rel)) throw invalid('path', 'must be relative to the base URL, not an absolute URL');
  if (/%(2e|2f|5c|00)/i.test(rel)) throw invalid('path', 'must not contain encoded dots, slashes or backslashes');
  if (rel.split('/').some((segment) => segment === '.' || segment === '..')) throw invalid('path', 'must not contain "." or ".." segments');
  const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  let url: URL;
  try {
    url = new URL(`${base.origin}${basePath}${rel}${query}`);
  } catch {
    throw invalid('path', 'is not a valid URL path');
  }
  if (url.origin !== base.origin || !(url.pathname === basePath.slice(0, -1) || url.pathname.startsWith(basePath)) || url.username || url.password) {
    throw invalid('path', 'must stay under the base URL');
  }
  return url;
}

/**
 * Checks a proxied request against the bounds and the declaration: a known method, a path under the
 * base URL, headers that neither carry a credential nor steer the connection, a bounded body.
 * Every refusal is INVALID_ARGUMENT naming the field; no value is quoted.
 */
export function checkProxyRequest(
  input: { method: string; path: string; headers: ProxyHeader[]; body: Uint8Array },
  declaration: { baseUrl: string; credentialHeader?: string },
): CheckedProxyRequest {
  const method = input.method.toUpperCase();
  if (!input.method) throw invalid('method', 'is required');
  if (!(PROXY_METHODS as readonly string[]).includes(method)) throw invalid('method', `must be one of ${PROXY_METHODS.join(', ')}`);
  const url = resolveProxyPath(declaration.baseUrl, input.path);
  if (input.headers.length > PROXY_LIMITS.headers) throw invalid('headers', `must be at most ${PROXY_LIMITS.headers}`);
  const credentialHeader = declaration.credentialHeader?.toLowerCase();
  const headers = input.headers.map((h, i) => {
    const at = `headers[${i}]`;
    if (!h.name || h.name.length > PROXY_LIMITS.headerNameChars || !TOKEN.test(h.name)) throw invalid(`${at}.name`, `must be an HTTP header name of at most ${PROXY_LIMITS.headerNameChars} characters`);
    if (h.value.length > PROXY_LIMITS.headerValueChars) throw invalid(`${at}.value`, `must be at most ${PROXY_LIMITS.headerValueChars} characters`);
    if (!HEADER_VALUE.test(h.value)) throw invalid(`${at}.value`, 'must not contain control characters');
    const name = h.name.toLowerCase();
    if (REFUSED_REQUEST_HEADERS.has(name) || name === credentialHeader) throw invalid(`${at}.name`, 'is set by the proxy and may not be sent by the caller');
    return { name, value: h.value };
  });
  if (input.body.byteLength > PROXY_LIMITS.bodyBytes) throw invalid('body', `must be at most ${PROXY_LIMITS.bodyBytes} bytes`);
  if (input.body.byteLength > 0 && (method === 'GET' || method === 'HEAD')) throw invalid('body', `must be empty for ${method}`);
  return { method: method as CheckedProxyRequest['method'], url, headers, body: Buffer.from(input.body) };
}

/** Response headers never passed back: hop-by-hop ones, the ones the proxy recomputes, and session or credential carriers. */
export const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authenticate',
  'proxy-authentication-info',
  'authentication-info',
  'content-length',
  'content-encoding',
  'set-cookie',
  'set-cookie2',
  'authorization',
]);
