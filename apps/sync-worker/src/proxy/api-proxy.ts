import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { CofferError } from '@coffer/contracts';
import { secretValues } from '@coffer/secret-json';
import { createRedactor, type Logger, type Redactor } from '@coffer/telemetry';
import { ConnectorError, parseObject } from '../connectors/connector';
import type { EgressPolicy, EgressTarget } from '../connectors/egress-policy';
import { CredentialNeedsReauthorizationError, CredentialRefreshError, type OAuthCredentials } from '../oauth/oauth-credentials';
import type { OAuthDeclaration } from '../oauth/token-endpoint';
import { credentialHeaders, parseProxyDeclaration } from './proxy-declaration';
import { checkProxyRequest, DROPPED_RESPONSE_HEADERS, type ProxyHeader } from './proxy-request';
import { withDeadline } from '../deadline';

/** What the proxy needs from secrets: the audited hydrate, with secrets' owner checks. */
export interface ProxyPorts {
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
}

export interface ApiProxyDeps {
  ports: ProxyPorts;
  egress: EgressPolicy;
  /** The process's redactor (log lines): hydrated values are registered with it for the length of a call. */
  redactor: Redactor;
  logger: Logger;
  /** Refreshes OAuth access tokens under the per-credential lease; absent, OAuth declarations are refused. */
  credentials?: Pick<OAuthCredentials, 'prepare'>;
  /** How long one call may take, the OAuth refresh included. */
  timeoutMs: number;
  /** Largest response body passed back, in bytes (after decompression). */
  maxResponseBytes: number;
}

/** One proxied call as config forwards it: the actor, its partial config and declarations, and the caller's request. */
export interface ProxyCall {
  workspaceId: string;
  actorId: string;
  partialConfigJson: string;
  proxyJson: string;
  oauthJson: string;
  method: string;
  path: string;
  headers: ProxyHeader[];
  body: Uint8Array;
}

/** The API's answer, redacted. */
export interface ProxyAnswer {
  status: number;
  headers: ProxyHeader[];
  body: Buffer;
}

const NAME = 'proxy';

/**
 * Sends callers' HTTP requests to a connector's API with the actor's stored credential. The config
 * is hydrated at secrets (audited, owner-checked) for each call; every hydrated value and every form
 * derived from one is registered with a redactor of the call (which cleans the answer) and with the
 * process's (which cleans log lines) before anything is sent. Redirects are answered, not followed,
 * so the credential goes to the declared origin only; each connection goes to the address the
 * egress policy checked.
 */
export function createApiProxy(deps: ApiProxyDeps) {
  const { ports, egress, redactor, logger, credentials } = deps;

  async function send(call: ProxyCall, signal?: AbortSignal): Promise<ProxyAnswer> {
    const declaration = parseProxyDeclaration(call.proxyJson);
    const credentialHeader = declaration.auth.type === 'api_key_header' ? declaration.auth.header : undefined;
    const request = checkProxyRequest(call, { baseUrl: declaration.baseUrl, credentialHeader });
    const local = createRedactor();
    const registered: string[] = [];
    const register = (values: string[]) => {
      for (const v of values) {
        local.register(v);
        redactor.register(v);
        registered.push(v);
      }
    };
    const deadline = withDeadline(signal, deps.timeoutMs, 'the proxied call timed out');
    const callSignal = deadline.signal;
    const reason = `proxy ${call.actorId}`;
    try {
      let partial = parseObject(call.partialConfigJson, 'the partial config');
      let config: Record<string, unknown>;
      let oauth: OAuthDeclaration | undefined;
      let accessCoordinate: string | undefined;
      if (declaration.auth.type === 'oauth2') {
        if (!credentials || !call.oauthJson) throw new ConnectorError('the proxy declares OAuth, but the definition declares no OAuth credential');
        oauth = parseObject(call.oauthJson, 'the OAuth declaration') as unknown as OAuthDeclaration;
        const prepared = await credentials.prepare({ actorId: call.actorId, workspaceId: call.workspaceId, partial, oauth }, reason, callSignal);
        ({ partial, config, accessCoordinate } = prepared);
      } else {
        config = parseObject(await ports.hydrate(call.workspaceId, call.partialConfigJson, reason, call.actorId), 'the hydrated config');
      }
      register(secretValues(partial, config));
      let injected = credentialHeaders(declaration.auth, config);
      register(injected.derived);
      let res = await exchange(request, injected.headers, callSignal);
      if (res.status === 401 && oauth && credentials && accessCoordinate) {
        // The provider refused the access token before its expiry: refresh once (under the lease) and try again.
        res.body.destroy();
        const prepared = await credentials.prepare({ actorId: call.actorId, workspaceId: call.workspaceId, partial, oauth }, reason, callSignal, accessCoordinate);
        register(secretValues(prepared.partial, prepared.config));
        injected = credentialHeaders(declaration.auth, prepared.config);
        register(injected.derived);
        res = await exchange(request, injected.headers, callSignal);
      }
      const body = await readBounded(res.body, res.headers, request.method === 'HEAD', deps.maxResponseBytes);
      const answer = { status: res.status, headers: answerHeaders(res.headers, local), body: redactBody(body, local) };
      logger.info({ actorId: call.actorId, method: request.method, host: request.url.host, status: res.status }, 'proxied an API request');
      return answer;
    } catch (err) {
      throw asCofferError(err, callSignal, redactor);
    } finally {
      deadline.clear();
      for (const v of registered) redactor.unregister(v);
    }
  }

  async function exchange(request: ReturnType<typeof checkProxyRequest>, credential: Record<string, string>, signal: AbortSignal) {
    const url = request.url;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const target = await egress.resolve(url.hostname, port, NAME);
    const headers: Record<string, string | string[]> = {};
    for (const h of request.headers) {
      const prev = headers[h.name];
      headers[h.name] = prev === undefined ? h.value : [...(Array.isArray(prev) ? prev : [prev]), h.value];
    }
    // What the worker sets itself comes last, so that nothing the caller sent replaces it.
    Object.assign(headers, { 'accept-encoding': 'gzip, deflate, br', ...credential });
    if (request.body.byteLength > 0) headers['content-length'] = String(request.body.byteLength);
    const res = await send1(url, target, request.method, headers, request.body, signal);
    return { status: res.statusCode ?? 502, headers: res.headers, body: res };
  }

  return { send };
}

/** The API proxy, as composed by main.ts. */
export type ApiProxy = ReturnType<typeof createApiProxy>;

function send1(url: URL, target: EgressTarget, method: string, headers: Record<string, string | string[]>, body: Buffer, signal: AbortSignal): Promise<IncomingMessage> {
  // The connection goes to the checked address whatever the name resolves to now; TLS still verifies
  // the certificate against the URL's host name.
  const lookup: LookupFunction = (_host, opts, callback) => {
    if (opts.all) (callback as (err: null, addresses: { address: string; family: number }[]) => void)(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, lookup, signal, agent: false }, resolve);
    req.on('error', (err) => reject(signal.aborted ? err : new ConnectorError(`the request to ${url.host} failed (${err instanceof Error ? err.name : 'error'})`)));
    req.end(body.byteLength > 0 ? body : undefined);
  });
}

class ResponseTooLargeError extends Error {}

async function readBounded(res: IncomingMessage, headers: IncomingHttpHeaders, head: boolean, max: number): Promise<Buffer> {
  if (head) {
    res.resume();
    return Buffer.alloc(0);
  }
  const encoding = String(headers['content-encoding'] ?? '').trim().toLowerCase();
  const declared = Number(headers['content-length'] ?? 0);
  if (!encoding && declared > max) {
    res.destroy();
    throw new ResponseTooLargeError();
  }
  // Compressed answers are inflated so that redaction sees the text (and the bound applies to it).
  const inflate = { gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress }[encoding];
  if (!inflate && encoding && encoding !== 'identity') {
    res.destroy();
    throw new ConnectorError('the API answered with a content encoding the proxy cannot read');
  }
  const stream = inflate ? res.pipe(inflate()) : res;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      res.destroy();
      throw new ResponseTooLargeError();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function answerHeaders(headers: IncomingHttpHeaders, local: Redactor): ProxyHeader[] {
  const out: ProxyHeader[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push({ name: local.redact(name), value: local.redact(v) });
  }
  return out;
}

/** Text bodies are redacted as UTF-8; anything else byte for byte (latin1), which still finds ASCII tokens. */
function redactBody(body: Buffer, local: Redactor): Buffer {
  if (body.byteLength === 0) return body;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    return Buffer.from(local.redact(text), 'utf8');
  } catch {
    return Buffer.from(local.redact(body.toString('latin1')), 'latin1');
  }
}

function asCofferError(err: unknown, signal: AbortSignal, redactor: Redactor): Error {
  if (err instanceof CofferError) return err;
  if (err instanceof ResponseTooLargeError) return new CofferError('failed_precondition', "the API's response is larger than the proxy passes back");
  if (signal.aborted && !(err instanceof ConnectorError)) return new CofferError('unavailable', 'the API did not answer in time');
  if (err instanceof CredentialNeedsReauthorizationError) return new CofferError('failed_precondition', err.message);
  if (err instanceof CredentialRefreshError) return new CofferError('unavailable', redactor.redact(err.message));
  if (err instanceof ConnectorError) {
    const message = redactor.redact(err.message);
    return new CofferError(/not allowed|refused|denied/i.test(message) ? 'failed_precondition' : 'unavailable', message);
  }
  return err instanceof Error ? err : new Error('proxy failed');
}
