import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevStack } from '../dev-stack';
import { externalDevStackPlace, repositoryRoot, startExternalDevStack } from '../external-dev-stack';

// The operator commands as a user runs them: each `coffer` a process of its own (bin/coffer.mjs),
// against a development stack whose four services are processes too, on the test Postgres and NATS.

const root = repositoryRoot;
const run = promisify(execFile);

describe('coffer connections, secrets, kek and audit against a running stack', () => {
  const place = externalDevStackPlace('cli_ops');
  const { home, database } = place;
  // Canaries: the API below answers only the first; neither may appear in anything the CLI prints.
  const secretV1 = `canary-v1-${randomBytes(12).toString('hex')}`;
  const secretV2 = `canary-v2-${randomBytes(12).toString('hex')}`;
  const seenWith = { v1: 0, other: 0 };
  const api = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${secretV1}`) {
      seenWith.other++;
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
      return;
    }
    seenWith.v1++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1, city: 'Lisbon' }, { id: 2, city: 'Oslo' }]));
  });
  let dev: DevStack | undefined;
  let printed = '';

  /** One `coffer` process with this stack's home, and no DATABASE_URL: what a user's shell has. */
  async function coffer(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, COFFER_HOME: home };
    const result = await run(process.execPath, [join(root, 'apps/cli/bin/coffer.mjs'), ...args], { cwd: root, env, timeout: 120_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
    printed += `${result.stdout}\n${result.stderr}\n`;
    return result;
  }
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await coffer(...args, '--json');
    expect(r, `coffer ${args.join(' ')}`).toMatchObject({ code: 0 });
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(async () => {
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    dev = await startExternalDevStack(place);
  }, 240_000);

  afterAll(async () => {
    await dev?.stop();
    await new Promise<void>((r) => api.close(() => r()));
    await place.remove();
  }, 120_000);

  it('lists connections, lists and rolls back secret versions (never a value), rotates and retires the KEK, verifies the audit chains', async () => {
    expect((await coffer('login')).code).toBe(0);
    const workspace = await json<{ workspaceId: string }>('workspaces', 'create', 'operations');
    const definitions = await json<{ definitionId: string; connector: string }[]>('definitions', 'list');
    const httpSource = definitions.find((d) => d.connector === 'builtin:http-json')!;
    const postgres = definitions.find((d) => d.connector === 'builtin:postgres')!;

    const file = (name: string, value: unknown) => {
      const path = join(home, name);
      writeFileSync(path, JSON.stringify(value), { mode: 0o600 });
      return path;
    };
    const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/records`;
    const source = await json<{ actorId: string; version: number }>('sources', 'create', '--workspace', workspace.workspaceId, '--definition', httpSource.definitionId, '--config', file('v1.json', { url: apiUrl, api_token: secretV1 }));
    await json('sources', 'update', source.actorId, '--config', file('v2.json', { url: apiUrl, api_token: secretV2 }));
    const db = new URL(place.databaseUrl);
    const destination = await json<{ actorId: string }>('destinations', 'create', '--workspace', workspace.workspaceId, '--definition', postgres.definitionId, '--config',
      file('warehouse.json', { host: db.hostname, port: Number(db.port || 5432), database, username: decodeURIComponent(db.username), password: decodeURIComponent(db.password) || 'trust', schema: 'cli_ops', table: 'records' }));
    const connection = await json<{ connectionId: string }>('connections', 'create', '--workspace', workspace.workspaceId, '--source', source.actorId, '--destination', destination.actorId, '--name', 'api to warehouse');

    // connections list and get
    const listed = await json<{ connectionId: string; sourceId: string }[]>('connections', 'list', '--workspace', workspace.workspaceId);
    expect(listed).toEqual([expect.objectContaining({ connectionId: connection.connectionId, sourceId: source.actorId, destinationId: destination.actorId, name: 'api to warehouse' })]);
    const table = await coffer('connections', 'list', '--workspace', workspace.workspaceId);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +NAME +SOURCE +DESTINATION +VERSION$/);
    expect(table.stdout).toContain(connection.connectionId);
    expect((await json<{ name: string }>('connections', 'get', connection.connectionId)).name).toBe('api to warehouse');

    // Two versions after the update; version 2 is current; no value anywhere.
    type Secret = { field: string; currentVersion: number; versions: { version: number; state: string; createdAt: string; current: boolean }[] };
    const before = await json<Secret[]>('secrets', 'versions', source.actorId);
    expect(before.map((s) => [s.field, s.currentVersion, s.versions.map((v) => [v.version, v.state, v.current])])).toEqual([['$.api_token', 2, [[1, 'active', false], [2, 'active', true]]]]);
    expect(before[0]!.versions.every((v) => !Number.isNaN(Date.parse(v.createdAt)))).toBe(true);
    const human = await coffer('secrets', 'versions', source.actorId, '--field', 'api_token');
    expect(human.stdout.split('\n')[0]).toMatch(/^FIELD +VERSION +STATE +CREATED +CURRENT$/);
    expect(human.stdout).toMatch(/\$\.api_token +2 +active +\S+ +yes/);

    // With version 2 the API refuses the sync; rolled back to version 1, it answers.
    expect((await coffer('sync', connection.connectionId, '--json')).code).toBe(1);
    const refusedBefore = seenWith.other;
    expect(refusedBefore).toBeGreaterThan(0);
    const rolled = await json<{ actorVersion: number; secret: Secret }>('secrets', 'rollback', source.actorId, '--field', 'api_token', '--to', '1');
    expect(rolled.secret.currentVersion).toBe(3);
    expect(rolled.secret.versions.map((v) => [v.version, v.current])).toEqual([[1, false], [2, false], [3, true]]);
    const stale = await coffer('secrets', 'rollback', source.actorId, '--field', 'api_token', '--to', '2', '--expected-version', '1');
    expect(stale).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: version_conflict: /) as string });
    const badField = await coffer('secrets', 'rollback', source.actorId, '--field', 'url', '--to', '1');
    expect(badField).toMatchObject({ code: 1, stderr: expect.stringContaining('error: invalid_argument: field') as string });
    const after = await json<Secret[]>('secrets', 'versions', source.actorId);
    expect(after[0]!.currentVersion).toBe(3);
    const synced = await json<{ status: string; recordsSynced: number }>('sync', connection.connectionId);
    expect(synced).toMatchObject({ status: 'succeeded', recordsSynced: 2 });
    expect(seenWith.v1).toBeGreaterThan(0);
    expect(seenWith.other).toBe(refusedBefore);

    // KEK: one version, then a rotation re-wraps every live data key, then the old version retires.
    type Keks = { provider: string; kekId: string; versions: { kekVersion: number; state: string; dataKeys: number }[] };
    const keks = await json<Keks>('kek', 'list');
    expect(keks.provider).toBe('local');
    expect(keks.versions).toEqual([expect.objectContaining({ kekVersion: 1, state: 'primary' })]);
    const wrappedByV1 = keks.versions[0]!.dataKeys;
    expect(wrappedByV1).toBeGreaterThan(0);
    const rotated = await json<{ kekVersion: number; rewrapped: number }>('kek', 'rotate');
    expect(rotated).toEqual({ kekVersion: 2, rewrapped: wrappedByV1 });
    const afterRotation = await json<Keks>('kek', 'list');
    expect(afterRotation.versions.map((v) => [v.kekVersion, v.state, v.dataKeys])).toEqual([[1, 'active', 0], [2, 'primary', wrappedByV1]]);
    const keksTable = await coffer('kek', 'list');
    expect(keksTable.stdout).toMatch(/^2 +primary +\d+$/m);
    expect((await coffer('kek', 'retire', '1')).code).toBe(0);
    expect((await json<Keks>('kek', 'list')).versions.map((v) => [v.kekVersion, v.state])).toEqual([[1, 'retired'], [2, 'primary']]);
    expect((await coffer('kek', 'retire', '2')).code).toBe(1);
    // The re-wrapped data keys still open: the next sync hydrates the secret under KEK version 2.
    expect((await json<{ status: string }>('sync', connection.connectionId)).status).toBe('succeeded');

    // The audit chains, read from the running stack's database without DATABASE_URL.
    const audit = await coffer('audit', 'verify');
    expect(audit.code).toBe(0);
    expect(audit.stdout).toContain(`/${database}, from the running development stack`);
    for (const schema of ['auth', 'secrets', 'config', 'sync']) expect(audit.stdout).toMatch(new RegExp(`^${schema}: \\d+ events, chain intact$`, 'm'));
    expect(audit.stdout).not.toContain(decodeURIComponent(db.password) || 'no-password-in-this-run');

    // Without a terminal, a create without --config is a usage error, asked nothing.
    const noTty = await coffer('sources', 'create', '--workspace', workspace.workspaceId, '--definition', httpSource.definitionId);
    expect(noTty.code).toBe(2);
    expect(noTty.stderr).toContain('--config is required when the input is not a terminal');

    expect(printed).not.toContain(secretV1);
    expect(printed).not.toContain(secretV2);
    expect(printed).not.toMatch(/^\s+at /m);
  }, 300_000);
});
