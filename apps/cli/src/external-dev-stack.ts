import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { adminDatabaseUrl, deleteStreams, testNatsUrl, uniqueId, uniqueNamespace } from '@coffer/testing';
import { startDevStack, type DevStack } from './dev-stack';
import { parseStackSettings } from './stack-settings';

/** The repository root (as the stack launcher sees it). */
export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Runs one statement on the test server's admin database. */
export async function adminQuery(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminDatabaseUrl() });
  // A connection that drops surfaces as the query's rejection, not as an unhandled 'error' event.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A home folder, a database and a stream namespace of one test's own, on the test servers. */
export interface ExternalDevStackPlace {
  home: string;
  database: string;
  databaseUrl: string;
  namespace: ReturnType<typeof uniqueNamespace>;
  /** Drops the database and the streams, and removes the home. */
  remove(): Promise<void>;
}

/** Makes the place for {@link startExternalDevStack}: nothing is created on the servers yet. */
export function externalDevStackPlace(prefix: string): ExternalDevStackPlace {
  const home = mkdtempSync(join(tmpdir(), `coffer-${prefix}-`));
  const database = `coffer_${prefix.replace(/[^a-z0-9]/g, '_')}_${uniqueId()}`;
  const url = new URL(adminDatabaseUrl());
  url.pathname = `/${database}`;
  const namespace = uniqueNamespace();
  return {
    home,
    database,
    databaseUrl: url.toString(),
    namespace,
    async remove() {
      await adminQuery(`drop database if exists "${database}" with (force)`);
      await deleteStreams(testNatsUrl(), namespace);
      await rm(home, { recursive: true, force: true });
    },
  };
}

/**
 * `npm start`'s development stack with DATABASE_URL and NATS_URL set to the test servers (no
 * embedded server), on free ports, in `place`; `serviceEnv` adds service settings.
 */
export function startExternalDevStack(
  place: ExternalDevStackPlace,
  options: { serviceEnv?: Record<string, string>; out?: (text: string) => void } = {},
): Promise<DevStack> {
  const settings = parseStackSettings({ DATABASE_URL: place.databaseUrl, NATS_URL: testNatsUrl(), COFFER_HOME: place.home, PATH: process.env.PATH });
  return startDevStack({
    settings: { ...settings, serviceEnv: { ...settings.serviceEnv, ...options.serviceEnv } },
    cwd: repositoryRoot,
    freePorts: true,
    verbose: false,
    runsAsRoot: process.getuid?.() === 0,
    out: options.out ?? (() => undefined),
    warn: options.out ?? (() => undefined),
    signal: new AbortController().signal,
    namespace: place.namespace,
  });
}
