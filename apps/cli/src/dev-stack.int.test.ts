import { existsSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { authV1 } from '@coffer/contracts';
import { createPromiseClient } from '@coffer/rpc';
import { adminDatabaseUrl, deleteStreams, testNatsUrl, uniqueId, uniqueNamespace } from '@coffer/testing';
import { startDevStack } from './dev-stack';
import { parseStackSettings } from './stack-settings';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminDatabaseUrl() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

describe('the development stack with DATABASE_URL and NATS_URL', () => {
  const home = mkdtempSync(join(tmpdir(), 'coffer-external-'));
  const database = `coffer_devstack_${uniqueId()}`;
  const ns = uniqueNamespace();

  afterAll(async () => {
    await admin(`drop database if exists "${database}" with (force)`);
    await deleteStreams(testNatsUrl(), ns);
    await rm(home, { recursive: true, force: true });
  });

  it('starts no embedded server, creates and seeds the database DATABASE_URL names, and stops every service', async () => {
    const url = new URL(adminDatabaseUrl());
    url.pathname = `/${database}`;
    const settings = parseStackSettings({ DATABASE_URL: url.toString(), NATS_URL: testNatsUrl(), COFFER_HOME: home, PATH: process.env.PATH });
    const lines: string[] = [];
    const dev = await startDevStack({
      settings,
      cwd: root,
      freePorts: true,
      verbose: false,
      runsAsRoot: process.getuid?.() === 0,
      out: (text) => lines.push(text),
      warn: (text) => lines.push(text),
      signal: new AbortController().signal,
      namespace: ns,
    });
    const pids = Object.values(dev.state.pids);
    try {
      expect(dev.postgres).toBeUndefined();
      expect(dev.nats).toBeUndefined();
      expect(Object.keys(dev.state.pids).sort()).toEqual(['auth', 'config', 'secrets', 'sync-worker']);
      expect(existsSync(join(home, 'postgres'))).toBe(false);
      expect(existsSync(join(home, 'nats'))).toBe(false);
      expect(dev.state.endpoints.nats).toBe(testNatsUrl());
      expect(lines.join('\n')).toContain('Postgres at DATABASE_URL');
      // The organization and application were made in the database DATABASE_URL names: their credentials work.
      const auth = createPromiseClient(authV1.AuthServiceClient, dev.state.endpoints.auth);
      const { clientId, clientSecret } = dev.seed.seed.application;
      expect((await auth.issueApplicationToken({ clientId, clientSecret })).accessToken).toMatch(/^ey/);
      auth.close();
      expect(dev.seed.definitions.map((d) => d.connector).sort()).toEqual(['builtin:http-json', 'builtin:postgres']);
    } finally {
      await dev.stop();
    }
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(join(home, 'stack.json'))).toBe(false);
    expect(lines.filter((l) => l.startsWith('stopped '))).toEqual(['stopped sync-worker', 'stopped config', 'stopped secrets', 'stopped auth'].map((p) => expect.stringMatching(new RegExp(`^${p} \\(`))));
  }, 240_000);
});
