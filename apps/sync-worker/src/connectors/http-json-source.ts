import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { AccessTokenRejectedError, ConnectorError, stringField, type Catalog, type SourceConnector, type SyncRecord } from './connector';
import { createEgressPolicy, type EgressPolicy, type EgressTarget } from './egress-policy';
import { withDeadline } from '../deadline';

const NAME = 'builtin:http-json';
const MAX_BODY_BYTES = 50 * 1024 * 1024;
const MAX_REDIRECTS = 5;

/**
 * GETs `url` with `Authorization: Bearer <api_token>` and yields each object of the JSON array
 * it answers (or of its `data` / `records` array). Every hop, redirects included, goes only where
 * the egress policy (deny private addresses by default) lets it.
 */
export function httpJsonSource(options: { timeoutMs?: number; egress?: EgressPolicy } = {}): SourceConnector {
  const egress = options.egress ?? createEgressPolicy();
  const source: SourceConnector = {
    async check(config, signal) {
      for await (const _record of source.read(config, signal)) break;
    },
    async discover(config, signal): Promise<Catalog> {
      const properties: Record<string, { type: string[] }> = {};
      let seen = 0;
      for await (const record of source.read(config, signal)) {
        for (const [k, v] of Object.entries(record)) {
          const t = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v;
          const types = new Set(properties[k]?.type ?? []);
          types.add(t);
          properties[k] = { type: [...types].sort() };
        }
        if (++seen >= 100) break;
      }
      return { streams: [{ name: 'records', json_schema: { type: 'object', properties } }] };
    },
    async *read(config, signal) {
      const url = stringField(config, 'url', NAME);
      // An OAuth definition's config holds access_token; a plain one api_token.
      const token = typeof config.access_token === 'string' && config.access_token !== '' ? config.access_token : stringField(config, 'api_token', NAME);
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new ConnectorError(`${NAME}: url is not a valid URL`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConnectorError(`${NAME}: url must be http or https`);
      const deadline = withDeadline(signal, options.timeoutMs ?? 30_000, `${NAME}: the source did not answer in time`);
      let text: string;
      try {
        text = await fetchFollowingChecked(parsed, token, egress, deadline.signal);
      } finally {
        deadline.clear();
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new ConnectorError(`${NAME}: response is not JSON`);
      }
      const list = Array.isArray(body)
        ? body
        : body && typeof body === 'object' && Array.isArray((body as { data?: unknown }).data)
          ? (body as { data: unknown[] }).data
          : body && typeof body === 'object' && Array.isArray((body as { records?: unknown }).records)
            ? (body as { records: unknown[] }).records
            : undefined;
      if (!list) throw new ConnectorError(`${NAME}: response is not a JSON array (nor an object with a data or records array)`);
      for (const [i, item] of list.entries()) {
        if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new ConnectorError(`${NAME}: record ${i} is not a JSON object`);
        yield item as SyncRecord;
      }
    },
  };
  return source;
}

/**
 * GETs `start`, following up to MAX_REDIRECTS redirects by hand so that each hop is checked by the
 * policy and connected to the very address that was checked. The bearer token goes to the origin it
 * was given for only, never to another origin a redirect names.
 */
async function fetchFollowingChecked(start: URL, token: string, egress: EgressPolicy, signal: AbortSignal): Promise<string> {
  let url = start;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const target = await egress.resolve(url.hostname, port, NAME);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (url.origin === start.origin) headers.authorization = `Bearer ${token}`;
    const res = await get(url, target, headers, signal);
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status)) {
      res.resume();
      const location = res.headers.location;
      let next: URL | undefined;
      try {
        next = location ? new URL(location, url) : undefined;
      } catch {
        next = undefined;
      }
      if (!next || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
        throw new ConnectorError(`${NAME}: ${url.host} answered HTTP ${status} without an http or https location`);
      }
      url = next;
      continue;
    }
    if (status === 401) {
      res.resume();
      throw new AccessTokenRejectedError(`${NAME}: ${url.host} answered HTTP 401`);
    }
    if (status < 200 || status > 299) {
      res.resume();
      throw new ConnectorError(`${NAME}: ${url.host} answered HTTP ${status}`);
    }
    return readBody(res, url);
  }
  throw new ConnectorError(`${NAME}: more than ${MAX_REDIRECTS} redirects from ${start.host}`);
}

function get(url: URL, target: EgressTarget, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  // The connection goes to the checked address whatever the name resolves to now; TLS still verifies
  // the certificate against the URL's host name.
  const lookup: LookupFunction = (_host, opts, callback) => {
    if (opts.all) (callback as (err: null, addresses: { address: string; family: number }[]) => void)(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method: 'GET', headers, lookup, signal, agent: false }, resolve);
    req.on('error', (err) => reject(new ConnectorError(`${NAME}: request to ${url.host} failed (${err instanceof Error ? err.name : 'error'})`)));
    req.end();
  });
}

function readBody(res: IncomingMessage, url: URL): Promise<string> {
  const length = Number(res.headers['content-length'] ?? 0);
  if (length > MAX_BODY_BYTES) {
    res.destroy();
    return Promise.reject(new ConnectorError(`${NAME}: response larger than ${MAX_BODY_BYTES} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        res.destroy();
        reject(new ConnectorError(`${NAME}: response larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => reject(new ConnectorError(`${NAME}: reading the response of ${url.host} failed (${err.name})`)));
    res.on('aborted', () => reject(new ConnectorError(`${NAME}: reading the response of ${url.host} failed (aborted)`)));
  });
}

