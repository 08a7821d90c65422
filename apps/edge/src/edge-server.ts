import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { cors as connectCors, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { ERROR_DETAILS_KEY } from '@coffer/rpc';
import type { Logger } from '@coffer/telemetry';
import type { Principal, TokenVerifier } from '@coffer/tokens';
import { callAllowed, preflightAllowed } from './browser-access';
import type { ForwardedMethod } from './forwarded-methods';
import { ApiError, apiErrorBody, createIntegrationsApi, integrationsRoutes } from './integrations-api';
import type { RateLimiter } from './rate-limiter';
import type { Upstreams } from './upstream';
import { codeName, connectErrorOf, edgeErrorOf, httpStatusOf, type EdgeError } from './upstream-errors';

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** What the edge is made of; main.ts composes it. */
export interface EdgeServerDeps {
  methods: readonly ForwardedMethod[];
  upstreams: Upstreams;
  verifier: TokenVerifier;
  /** Per token. */
  limiter: RateLimiter;
  /** Per client address, for calls without a token. */
  anonymousLimiter: RateLimiter;
  logger: Logger;
  allowedOrigins: readonly string[];
  maxRequestBytes: number;
  defaultDeadlineMs: number;
}

/** The running edge. */
export interface EdgeServer {
  listen(address: string): Promise<number>;
  close(): Promise<void>;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
// The folder holding openapi.json and widget/: the bundle's own (tools/build-app.mjs copies the
// package's `assets` next to main.js), else the package root above src/ when run from source.
const STATIC_ROOT = ['./', '../'].map((dir) => fileURLToPath(new URL(dir, import.meta.url))).find((dir) => existsSync(`${dir}openapi.json`)) ?? fileURLToPath(new URL('../', import.meta.url));
// Headers a browser page may send and read: Connect's and gRPC-Web's, plus the error details.
const ALLOW_HEADERS = [...new Set([...connectCors.allowedHeaders, 'Authorization'])].join(', ');
const EXPOSE_HEADERS = [...new Set([...connectCors.exposedHeaders, ERROR_DETAILS_KEY, 'Retry-After'])].join(', ');

/** The OpenAPI document of `/api/v1`, served at `/api/v1/openapi.json`. */
export function openApiDocument(): string {
  return readFileSync(`${STATIC_ROOT}openapi.json`, 'utf8');
}

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/widget/': { file: 'widget/index.html', type: 'text/html; charset=utf-8' },
  '/widget/index.html': { file: 'widget/index.html', type: 'text/html; charset=utf-8' },
  '/widget/coffer-widget.js': { file: 'widget/coffer-widget.js', type: 'text/javascript; charset=utf-8' },
  '/widget/coffer-widget.css': { file: 'widget/coffer-widget.css', type: 'text/css; charset=utf-8' },
  '/api/v1/openapi.json': { file: 'openapi.json', type: 'application/json' },
};

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : Array.isArray(v) ? v[0] : undefined;
}

function isGrpc(req: Request): boolean {
  return (header(req, 'content-type') ?? '').startsWith('application/grpc');
}

/** Answers a refusal made by the edge itself in the caller's protocol: gRPC and gRPC-Web in headers, else JSON. */
function refuse(req: Request, res: Response, error: EdgeError, extra: Record<string, string> = {}): void {
  if (res.headersSent) return;
  if (isGrpc(req)) {
    res.writeHead(200, {
      ...extra,
      'content-type': header(req, 'content-type')!,
      'grpc-status': String(error.code),
      'grpc-message': encodeURIComponent(error.message),
      ...(error.details.length > 0 && { [ERROR_DETAILS_KEY]: JSON.stringify(error.details) }),
    });
    res.end();
    return;
  }
  res.writeHead(httpStatusOf(error.code), { ...extra, 'content-type': 'application/json' });
  res.end(JSON.stringify(apiErrorBody(error, codeName(error.code))));
}

function readBody(req: Request, max: number): Promise<Buffer | 'too large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        resolve('too large');
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The edge's HTTP server: Connect, gRPC-Web and gRPC for the forwarded methods, `/api/v1`, the widget. */
export function createEdgeServer(deps: EdgeServerDeps): EdgeServer {
  const { logger } = deps;
  const byPath = new Map(deps.methods.map((m) => [m.path, m]));
  const api = createIntegrationsApi({ methods: byPath, upstreams: deps.upstreams });
  const apiPaths = new Set(integrationsRoutes.map((r) => r.path));
  const statics = new Map(Object.entries(STATIC_FILES).map(([path, f]) => [path, { type: f.type, body: readFileSync(`${STATIC_ROOT}${f.file}`) }]));

  const routes = (router: ConnectRouter) => {
    for (const m of deps.methods) {
      const impl = async (req: unknown, ctx: HandlerContext) => {
        const input = m.method.input as DescMessage;
        const timeout = ctx.timeoutMs();
        try {
          const bytes = await deps.upstreams.call(m.upstream, m.path, toBinary(input, create(input, req as never)), {
            authorization: ctx.requestHeader.get('authorization') ?? undefined,
            origin: ctx.requestHeader.get('origin') ?? undefined,
            traceparent: ctx.requestHeader.get('traceparent') ?? undefined,
            deadline: new Date(Date.now() + (timeout ?? deps.defaultDeadlineMs)),
            signal: ctx.signal,
          });
          return fromBinary(m.method.output, bytes) as never;
        } catch (err) {
          throw connectErrorOf(edgeErrorOf(err));
        }
      };
      router.rpc(m.method, impl as never);
    }
  };

  async function serveApi(req: Request, res: Response, url: URL, principal: Principal | undefined, cors: Record<string, string>): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'POST') {
      refuse(req, res, { code: grpc.status.UNIMPLEMENTED, message: `${method} is not served on ${url.pathname}`, details: [] }, cors);
      return;
    }
    let body: unknown;
    if (method === 'POST') {
      const raw = await readBody(req, deps.maxRequestBytes);
      if (raw === 'too large') return tooLarge(req, res, cors);
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        refuse(req, res, { code: grpc.status.INVALID_ARGUMENT, message: 'body is not valid JSON', details: [{ field: 'body', reason: 'not JSON' }] }, cors);
        return;
      }
    }
    try {
      const answer = await api.handle(method, url, body, principal, {
        authorization: header(req, 'authorization'),
        origin: header(req, 'origin'),
        traceparent: header(req, 'traceparent'),
        deadline: new Date(Date.now() + deps.defaultDeadlineMs),
      });
      res.writeHead(answer.status, { ...cors, 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    } catch (err) {
      const error = err instanceof ApiError ? err.error : edgeErrorOf(err);
      const extra = error.details.length > 0 ? { ...cors, [ERROR_DETAILS_KEY]: JSON.stringify(error.details) } : cors;
      refuse(req, res, error, extra);
    }
  }

  function tooLarge(req: Request, res: Response, cors: Record<string, string>): void {
    const error: EdgeError = { code: grpc.status.RESOURCE_EXHAUSTED, message: `the request is larger than ${deps.maxRequestBytes} bytes`, details: [] };
    if (isGrpc(req)) return refuse(req, res, error, cors);
    res.writeHead(413, { ...cors, 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify(apiErrorBody(error, 'resource_exhausted')));
  }

  const connectHandler = connectNodeAdapter({
    routes,
    readMaxBytes: deps.maxRequestBytes,
    fallback: (req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'not_found', message: 'no such path' }));
    },
  });

  async function handle(req: Request, res: Response): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://edge.invalid');
    const method = req.method ?? 'GET';
    if ((method === 'GET' || method === 'HEAD') && statics.has(url.pathname)) {
      const file = statics.get(url.pathname)!;
      res.writeHead(200, {
        'content-type': file.type,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        // The widget's script runs in the platform's page; the edge's own page allows only its own files and calls.
        ...(file.type.startsWith('text/html') && { 'content-security-policy': "default-src 'self'; style-src 'self'; frame-ancestors 'none'" }),
        'cross-origin-resource-policy': 'cross-origin',
      });
      if (method === 'HEAD') res.end();
      else res.end(file.body);
      return;
    }
    if (method === 'GET' && url.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }

    const origin = header(req, 'origin');
    const authorization = header(req, 'authorization');
    const token = authorization ? BEARER.exec(authorization)?.[1] : undefined;
    let principal: Principal | undefined;
    if (authorization && !token) return refuse(req, res, { code: grpc.status.UNAUTHENTICATED, message: 'malformed authorization header', details: [] });
    if (token) {
      try {
        principal = await deps.verifier.verify(token);
      } catch (err) {
        return refuse(req, res, edgeErrorOf({ code: grpc.status.UNAUTHENTICATED, details: (err as Error).message ?? 'invalid token' }));
      }
    }

    if (method === 'OPTIONS') {
      if (!origin) {
        res.writeHead(204, { allow: 'GET, POST, OPTIONS' });
        res.end();
        return;
      }
      const verdict = preflightAllowed(origin, url.pathname, principal, Boolean(token), deps.allowedOrigins);
      if (!verdict.allowed) {
        logger.info({ origin, path: url.pathname, kind: principal?.kind }, `preflight refused: ${verdict.reason}`);
        return refuse(req, res, { code: grpc.status.PERMISSION_DENIED, message: verdict.reason, details: [] }, { vary: 'Origin' });
      }
      res.writeHead(204, {
        'access-control-allow-origin': origin,
        'access-control-allow-methods': 'GET, POST',
        'access-control-allow-headers': ALLOW_HEADERS,
        'access-control-max-age': '600',
        vary: 'Origin',
      });
      res.end();
      return;
    }

    let cors: Record<string, string> = {};
    if (origin) {
      const verdict = callAllowed(origin, principal, deps.allowedOrigins);
      if (!verdict.allowed) {
        logger.info({ origin, path: url.pathname, kind: principal?.kind }, `call refused: ${verdict.reason}`);
        return refuse(req, res, { code: grpc.status.PERMISSION_DENIED, message: verdict.reason, details: [] }, { vary: 'Origin' });
      }
      cors = { 'access-control-allow-origin': origin, 'access-control-expose-headers': EXPOSE_HEADERS, vary: 'Origin' };
    }

    const length = Number(header(req, 'content-length') ?? '0');
    if (length > deps.maxRequestBytes) return tooLarge(req, res, cors);

    const turn = principal ? deps.limiter.take(principal.tokenId) : deps.anonymousLimiter.take(req.socket.remoteAddress ?? '');
    if (!turn.ok) {
      const error: EdgeError = { code: grpc.status.RESOURCE_EXHAUSTED, message: `too many calls; retry in ${turn.retryAfterSeconds} s`, details: [] };
      return refuse(req, res, error, { ...cors, 'retry-after': String(turn.retryAfterSeconds) });
    }

    if (apiPaths.has(url.pathname)) return serveApi(req, res, url, principal, cors);
    for (const [name, value] of Object.entries(cors)) res.setHeader(name, value);
    connectHandler(req, res);
  }

  const onRequest = (req: Request, res: Response) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err }, 'unhandled error in the edge');
      refuse(req, res, { code: grpc.status.INTERNAL, message: 'internal error', details: [] });
    });
  };
  const h1 = http.createServer(onRequest);
  const h2 = http2.createServer({}, onRequest);
  const h2Sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (session) => {
    h2Sessions.add(session);
    session.once('close', () => h2Sessions.delete(session));
  });
  // One port for both: a cleartext HTTP/2 connection opens with the client preface "PRI * HTTP/2.0".
  const server = net.createServer((socket) => {
    socket.once('data', (first) => {
      socket.pause();
      socket.unshift(first);
      (first.subarray(0, 3).toString('latin1') === 'PRI' ? h2 : h1).emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
    socket.on('error', () => socket.destroy());
  });

  return {
    listen(address) {
      const i = address.lastIndexOf(':');
      const host = address.slice(0, i).replace(/^\[|\]$/g, '');
      const port = Number(address.slice(i + 1));
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve((server.address() as net.AddressInfo).port));
      });
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        h1.closeAllConnections();
        for (const s of h2Sessions) s.close();
      });
    },
  };
}
