import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Telemetry } from './tracing';

/** One readiness check: resolves when the dependency answers, rejects (or outlasts the timeout) when it does not. */
export type ReadinessCheck = () => Promise<unknown>;

/** Options of {@link startOpsServer}. */
export interface OpsServerOptions {
  /** `host:port` to bind (port 0: any free port). */
  address: string;
  /** Named checks `/readyz` runs, e.g. `postgres`, `nats`, `jwks`, `kms`. */
  checks: Record<string, ReadinessCheck>;
  /** Supplies `/metrics`; without a Prometheus reader that path answers 404. */
  telemetry?: Pick<Telemetry, 'prometheusHandler'>;
  /** How long each check may take before it counts as failed (default 2 s). */
  checkTimeoutMs?: number;
}

/** A running ops server. */
export interface OpsServer {
  /** The bound port. */
  port: number;
  close(): Promise<void>;
}

function withTimeout(check: ReadinessCheck, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([Promise.resolve().then(check), timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts the HTTP server orchestrators and scrapers use, on a port of its own: `/healthz` (the
 * process is alive: always 200), `/readyz` (200 when every check passes, else 503 naming the failed
 * ones) and `/metrics` (Prometheus). Bodies are small JSON and never carry an error's text, which
 * could quote a connection string.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const timeoutMs = options.checkTimeoutMs ?? 2_000;
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' });
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const names = Object.keys(options.checks);
      void Promise.allSettled(names.map((n) => withTimeout(options.checks[n]!, timeoutMs))).then((results) => {
        const checks = Object.fromEntries(names.map((n, i) => [n, results[i]!.status === 'fulfilled' ? 'ok' : 'failed']));
        const ready = results.every((r) => r.status === 'fulfilled');
        json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unready', checks });
      });
      return;
    }
    if (path === '/metrics' && options.telemetry?.prometheusHandler) return options.telemetry.prometheusHandler(req, res);
    json(res, 404, { error: 'not found' });
  });
  const { host, port } = splitAddress(options.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** @internal `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function splitAddress(address: string): { host?: string; port: number } {
  const i = address.lastIndexOf(':');
  if (i < 0) throw new Error(`not a host:port address: ${address}`);
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`not a host:port address: ${address}`);
  return { host: host === '' ? undefined : host, port };
}
