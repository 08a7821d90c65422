import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack, type StackService } from '@coffer/cli';
import { createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { startNatsServer, type NatsServerProcess } from './chaos/nats-server';

// Readiness follows NATS: the four services on a NATS server of this test's own, stopped and started again.
const services: StackService[] = ['auth', 'secrets', 'config', 'sync-worker'];
const metricsSetting: Record<StackService, string> = { auth: 'AUTH_METRICS_ADDRESS', secrets: 'SECRETS_METRICS_ADDRESS', config: 'CONFIG_METRICS_ADDRESS', 'sync-worker': 'SYNC_WORKER_METRICS_ADDRESS' };
const NATS_BINARY = process.env.NATS_SERVER_BINARY || '/usr/sbin/nats-server';

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function readyz(port: number): Promise<{ status: number; body: { status: string; checks: Record<string, string> } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
}

describe('/readyz follows NATS: unready while the server is down, ready again once it is back', () => {
  let db: TestDatabase;
  let nats: NatsServerProcess;
  let stack: Stack;
  const opsPort = {} as Record<StackService, number>;

  beforeAll(async () => {
    db = await createTestDatabase('coffer_ready_nats');
    nats = await startNatsServer(NATS_BINARY);
    stack = await startStack({
      databaseUrl: db.url,
      natsUrl: nats.url,
      namespace: uniqueNamespace(),
      serviceEnv: Object.fromEntries(services.map((s) => [s, { [metricsSetting[s]]: '127.0.0.1:0' }])),
    });
    for (const s of services) {
      opsPort[s] = await until(`${s}'s ops endpoint`, () => {
        for (const line of stack.services[s].output) {
          try {
            const parsed = JSON.parse(line) as { event?: string; port?: number };
            if (parsed.event === 'ops_listening' && typeof parsed.port === 'number') return parsed.port;
          } catch {
            // not a JSON line
          }
        }
        return undefined;
      });
    }
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
    // The server's store directory (and every stream in it) goes with it.
    await nats?.dispose(false);
    await db?.drop();
  }, 60_000);

  it('answers 503 naming nats while the server is stopped (live all along), and 200 once it runs again', async () => {
    for (const s of services) {
      const r = await until(`${s} ready`, async () => {
        const x = await readyz(opsPort[s]);
        return x.status === 200 ? x : undefined;
      });
      expect(r.body.checks.nats, s).toBe('ok');
    }
    await nats.stop();
    for (const s of services) {
      const r = await until(`${s} unready`, async () => {
        const x = await readyz(opsPort[s]);
        return x.status === 503 ? x : undefined;
      });
      expect(r.body.status, s).toBe('unready');
      expect(r.body.checks.nats, s).toBe('failed');
      expect(r.body.checks.postgres, s).toBe('ok');
      expect((await fetch(`http://127.0.0.1:${opsPort[s]}/healthz`)).status, `${s} live`).toBe(200);
      expect(stack.services[s].process.exitCode, `${s} still running`).toBeNull();
    }
    await nats.start();
    for (const s of services) {
      const r = await until(`${s} ready again`, async () => {
        const x = await readyz(opsPort[s]);
        return x.status === 200 ? x : undefined;
      }, 90_000);
      expect(r.body.checks.nats, s).toBe('ok');
    }
  }, 300_000);
});
