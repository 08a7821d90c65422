import { existsSync } from 'node:fs';
import type { TestProject } from 'vitest/node';

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

/**
 * Vitest global setup: one Postgres and one NATS for the whole run. Containers when a Docker engine
 * answers, otherwise DATABASE_URL / NATS_URL (defaults 127.0.0.1:5432 and :4222). Each test file
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
  project.provide('databaseUrl', process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  project.provide('natsUrl', process.env.NATS_URL ?? 'nats://127.0.0.1:4222');
  return undefined;
}
