import { ConnectorError, stringField, type Catalog, type SourceConnector, type SyncRecord } from './connector';

const NAME = 'builtin:http-json';
const MAX_BODY_BYTES = 50 * 1024 * 1024;

/**
 * GETs `url` with `Authorization: Bearer <api_token>` and yields each object of the JSON array
 * it answers (or of its `data` / `records` array).
 */
export function httpJsonSource(options: { timeoutMs?: number } = {}): SourceConnector {
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
      const token = stringField(config, 'api_token', NAME);
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new ConnectorError(`${NAME}: url is not a valid URL`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConnectorError(`${NAME}: url must be http or https`);
      let res: Response;
      try {
        res = await fetch(parsed, {
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
          signal: AbortSignal.any([signal, AbortSignal.timeout(options.timeoutMs ?? 30_000)]),
          redirect: 'error',
        });
      } catch (err) {
        throw new ConnectorError(`${NAME}: request to ${parsed.host} failed (${err instanceof Error ? err.name : 'error'})`);
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new ConnectorError(`${NAME}: ${parsed.host} answered HTTP ${res.status}`);
      }
      const length = Number(res.headers.get('content-length') ?? 0);
      if (length > MAX_BODY_BYTES) throw new ConnectorError(`${NAME}: response larger than ${MAX_BODY_BYTES} bytes`);
      let body: unknown;
      try {
        body = await res.json();
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
