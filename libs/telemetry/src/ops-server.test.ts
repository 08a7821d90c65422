import { describe, expect, it } from 'vitest';
import { splitAddress, startOpsServer } from './ops-server';

describe('startOpsServer', () => {
  it('answers /healthz always, /readyz 200 or 503 naming failed and slow checks without their error text', async () => {
    let postgresUp = true;
    const server = await startOpsServer({
      address: '127.0.0.1:0',
      checkTimeoutMs: 100,
      checks: {
        postgres: async () => {
          if (!postgresUp) throw new Error('connect ECONNREFUSED postgres://user:pw@db/coffer');
        },
        nats: async () => undefined,
      },
    });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready', checks: { postgres: 'ok', nats: 'ok' } });
      postgresUp = false;
      const unready = await fetch(`${base}/readyz`);
      expect(unready.status).toBe(503);
      const text = await unready.text();
      expect(JSON.parse(text)).toEqual({ status: 'unready', checks: { postgres: 'failed', nats: 'ok' } });
      expect(text).not.toContain('pw@');
      expect((await fetch(`${base}/metrics`)).status).toBe(404);
      expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
    } finally {
      await server.close();
    }
  });

  it('counts a check that never answers as failed', async () => {
    const server = await startOpsServer({ address: '127.0.0.1:0', checkTimeoutMs: 50, checks: { kms: () => new Promise(() => undefined) } });
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ status: 'unready', checks: { kms: 'failed' } });
    } finally {
      await server.close();
    }
  });

  it('parses host:port addresses', () => {
    expect(splitAddress('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(splitAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(splitAddress(':9464')).toEqual({ host: undefined, port: 9464 });
    expect(() => splitAddress('nonsense')).toThrow(/host:port/);
  });
});
