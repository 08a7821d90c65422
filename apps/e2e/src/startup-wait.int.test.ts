import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1, eventSubject, streamName, type MessagingNamespace } from '@coffer/contracts';
import { generateDevCredentials, startStack, type DevCredentials, type Stack } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { call, ok, rawClient } from './raw-grpc';

const NATS_SERVER = '/usr/sbin/nats-server';
/** The start-up bound the give-up cases run with (COFFER_STARTUP_WAIT_MS). */
const SMALL_BOUND_MS = 3_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A plain TCP relay to the real Postgres, opened late: to the services, Postgres "comes up" when it listens. */
function postgresRelay(port: number, target: URL): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port || 5432) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.emit('close');
  });
}

async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/**
 * The message startStack rejects with when a service exits during start-up (it quotes the service's
 * last lines), and how long the service waited: from its first "not reachable yet" line to its last line.
 */
async function startupFailure(start: Promise<Stack>): Promise<{ message: string; ms: number }> {
  const outcome = await start.then(
    async (stack) => {
      await stack.stop();
      return new Error('the stack started');
    },
    (err: unknown) => err as Error,
  );
  const times = outcome.message
    .split('\n')
    .flatMap((l) => {
      try {
        const parsed = JSON.parse(l) as { time: string; msg: string };
        return [{ at: Date.parse(parsed.time), msg: parsed.msg }];
      } catch {
        return [];
      }
    });
  const first = times.find((t) => t.msg.endsWith('not reachable yet; retrying'));
  return { message: outcome.message, ms: first ? times.at(-1)!.at - first.at : Number.NaN };
}

describe('start-up waits for Postgres, NATS and auth with a bound, and names the setting when it gives up', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  // One set for every stack of this file: they share a database, which keeps auth's signing keys.
  let credentials: DevCredentials;

  beforeAll(async () => {
    db = await createTestDatabase('coffer_startup');
    ns = uniqueNamespace();
    credentials = await generateDevCredentials();
  }, 60_000);

  afterAll(async () => {
    if (ns) await deleteStreams(testNatsUrl(), ns).catch(() => undefined);
    await db?.drop();
  }, 60_000);

  it(
    'comes up once Postgres and a NATS server start listening a few seconds after the services',
    async () => {
      const pgPort = await freePort();
      const natsPort = await freePort();
      const natsUrl = `nats://127.0.0.1:${natsPort}`;
      const databaseUrl = new URL(db.url);
      const target = new URL(db.url);
      databaseUrl.port = String(pgPort);
      const storeDir = await mkdtemp(join(tmpdir(), 'coffer-nats-'));
      let relay: Server | undefined;
      let nats: ChildProcess | undefined;
      let stack: Stack | undefined;
      const timers: NodeJS.Timeout[] = [];
      const at: Record<string, number> = {};
      // Each dependency appears about 2 s after auth first found it missing (process start-up time varies).
      const echo = (_service: string, line: string) => {
        if (at.pgMissing === undefined && line.includes('Postgres (DATABASE_URL) not reachable yet')) {
          at.pgMissing = Date.now();
          timers.push(setTimeout(() => void postgresRelay(pgPort, target).then((s) => ((relay = s), (at.pgUp = Date.now()))), 2_000));
        }
        if (at.natsMissing === undefined && line.includes('NATS JetStream (NATS_URL) not reachable yet')) {
          at.natsMissing = Date.now();
          timers.push(
            setTimeout(() => {
              nats = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', storeDir], { stdio: 'ignore' });
              at.natsUp = Date.now();
            }, 2_000),
          );
        }
        if (line.includes('"event":"listening"') && line.includes('"service":"auth"')) at.authListening = Date.now();
      };
      try {
        stack = await startStack({ databaseUrl: databaseUrl.toString(), natsUrl, namespace: ns, credentials, echo, startTimeoutMs: 120_000 });
        console.log(
          `auth listening ${at.authListening! - at.natsUp!} ms after the NATS server started (Postgres relay opened ${at.pgUp! - at.pgMissing!} ms after auth first missed it, NATS ${at.natsUp! - at.natsMissing!} ms after)`,
        );
        const out = stack.output();
        expect(out).toContain('"msg":"Postgres (DATABASE_URL) answered; continuing start-up"');
        expect(out).toContain('"msg":"NATS JetStream (NATS_URL) answered; continuing start-up"');

        // It works, over the late NATS server: an event of a new workspace reaches its stream there.
        const auth = rawClient(authV1.AuthServiceClient, stack.services.auth.address, authV1);
        const config = rawClient(configV1.ConfigServiceClient, stack.services.config.address, configV1);
        const nc = await connect({ servers: natsUrl });
        try {
          const token = (await ok(call<authV1.IssueServiceTokenResponse>(auth, 'issueServiceToken', { ...stack.credentials.clients.operator, audience: 'config' }))).accessToken;
          const name = `late-${randomUUID().slice(0, 8)}`;
          const ws = (await ok(call<configV1.CreateWorkspaceResponse>(config, 'createWorkspace', { name }, token))).workspace!.workspaceId;
          const consumer = await jetstream(nc).consumers.get(streamName(ns, 'config'), { filter_subjects: eventSubject(ns, 'WorkspaceCreated'), deliver_policy: DeliverPolicy.All });
          let found = false;
          for (let i = 0; i < 30 && !found; i++) {
            const m = await consumer.next({ expires: 1_000 });
            found = !!m && new TextDecoder().decode(m.data).includes(ws);
          }
          expect(found).toBe(true);
        } finally {
          auth.close();
          config.close();
          await nc.close();
        }
      } finally {
        timers.forEach(clearTimeout);
        await stack?.stop();
        await stopProcess(nats);
        await closeServer(relay);
        await rm(storeDir, { recursive: true, force: true });
      }
    },
    240_000,
  );

  it(
    'exits non-zero naming NATS_URL when no NATS server ever answers within COFFER_STARTUP_WAIT_MS',
    async () => {
      const natsUrl = `nats://127.0.0.1:${await freePort()}`;
      const { message, ms } = await startupFailure(
        startStack({ databaseUrl: db.url, natsUrl, namespace: ns, credentials, serviceEnv: { auth: { COFFER_STARTUP_WAIT_MS: String(SMALL_BOUND_MS) } } }),
      );
      console.log(`auth gave up on NATS ${ms} ms after its first failed try (bound ${SMALL_BOUND_MS} ms)`);
      expect(message).toContain('auth exited with code 1 during start-up');
      expect(message).toContain(`NATS JetStream did not answer within ${SMALL_BOUND_MS} ms`);
      expect(message).toContain('check NATS_URL, or wait longer with COFFER_STARTUP_WAIT_MS');
    },
    120_000,
  );

  it(
    'exits non-zero naming DATABASE_URL when Postgres never answers, without printing the URL',
    async () => {
      const databaseUrl = new URL(db.url);
      databaseUrl.port = String(await freePort());
      databaseUrl.password = 'not-to-be-logged';
      const { message, ms } = await startupFailure(
        startStack({ databaseUrl: databaseUrl.toString(), natsUrl: testNatsUrl(), namespace: ns, credentials, serviceEnv: { auth: { COFFER_STARTUP_WAIT_MS: String(SMALL_BOUND_MS) } } }),
      );
      console.log(`auth gave up on Postgres ${ms} ms after its first failed try (bound ${SMALL_BOUND_MS} ms)`);
      expect(message).toContain('auth exited with code 1 during start-up');
      expect(message).toContain(`Postgres did not answer within ${SMALL_BOUND_MS} ms (last failure: network:ECONNREFUSED); check DATABASE_URL`);
      expect(message).not.toContain('not-to-be-logged');
    },
    120_000,
  );

  it(
    "exits non-zero naming AUTH_ADDRESS when auth's JWKS never answers",
    async () => {
      const nowhere = `127.0.0.1:${await freePort()}`;
      const { message, ms } = await startupFailure(
        startStack({
          databaseUrl: db.url,
          natsUrl: testNatsUrl(),
          namespace: ns,
          credentials,
          serviceEnv: { secrets: { AUTH_ADDRESS: nowhere, COFFER_STARTUP_WAIT_MS: String(SMALL_BOUND_MS) } },
        }),
      );
      console.log(`secrets gave up on auth's JWKS ${ms} ms after its first failed try (bound ${SMALL_BOUND_MS} ms)`);
      expect(message).toContain('secrets exited with code 1 during start-up');
      expect(message).toContain(`auth's JWKS did not answer within ${SMALL_BOUND_MS} ms (last failure: unavailable); check AUTH_ADDRESS`);
    },
    180_000,
  );
});
