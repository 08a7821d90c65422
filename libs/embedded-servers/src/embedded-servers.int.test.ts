import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { chmod, cp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { binariesRunnableBy, checkReachable, ensureDatabase, findPostgresBinaries, postgresUser, startEmbeddedPostgres } from './embedded-postgres';
import { findOnPath, startNatsServer } from './nats-server';

const run = promisify(execFile);
const dirs: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('embedded Postgres', () => {
  it('creates a cluster on the first start, keeps its data across a restart, and stops without leaving a process', async () => {
    const home = tempDir('coffer-pg-');
    const runsAsRoot = process.getuid?.() === 0;
    if (runsAsRoot) await chmod(home, 0o711);
    const options = {
      binaries: await findPostgresBinaries(),
      dataDir: join(home, 'postgres'),
      port: 0,
      password: 'a-long-enough-development-password',
      logFile: join(home, 'postgres.log'),
      runAs: runsAsRoot ? await postgresUser() : undefined,
      env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' },
    };
    const port = await freePort();
    const first = await startEmbeddedPostgres({ ...options, port });
    expect(first.created).toBe(true);
    expect(first.version).toMatch(/^15\./);
    await ensureDatabase(first.url('postgres'), 'coffer');
    await ensureDatabase(first.url('postgres'), 'coffer');
    const write = new pg.Client({ connectionString: first.url('coffer') });
    await write.connect();
    await write.query('create table kept (v text)');
    await write.query("insert into kept values ('across restarts')");
    await write.end();
    // Password authentication: a wrong password is refused.
    const wrong = new pg.Client({ connectionString: first.url('coffer').replace(encodeURIComponent(options.password), 'wrong') });
    await expect(wrong.connect()).rejects.toThrow(/password authentication failed/);
    await first.stop();
    expect(alive(first.process.pid)).toBe(false);
    // No Unix socket, no lock file in the system temp folder: TCP on 127.0.0.1 only.
    expect(readdirSync('/tmp').filter((n) => n === `.s.PGSQL.${port}` || n === `.s.PGSQL.${port}.lock`)).toEqual([]);
    expect(existsSync(join(home, `.postgres-pwfile-${process.pid}`))).toBe(false);

    const second = await startEmbeddedPostgres({ ...options, port });
    try {
      expect(second.created).toBe(false);
      const read = new pg.Client({ connectionString: second.url('coffer') });
      await read.connect();
      expect((await read.query('select v from kept')).rows).toEqual([{ v: 'across restarts' }]);
      await read.end();
    } finally {
      await second.stop();
    }
    expect(alive(second.process.pid)).toBe(false);
  }, 120_000);
});

describe('embedded Postgres under root', () => {
  const runsAsRoot = process.getuid?.() === 0;

  it.skipIf(!runsAsRoot)('copies the binaries into the home when the postgres user cannot reach the installed ones, once', async () => {
    const runAs = await postgresUser();
    const installed = await findPostgresBinaries();
    // A checkout below a folder only root may enter, as /root is.
    const hidden = tempDir('coffer-hidden-');
    const pkg = join(hidden, 'pkg');
    await cp(dirname(dirname(dirname(installed.postgres))), pkg, { recursive: true, verbatimSymlinks: true });
    const unreachable = { initdb: join(pkg, 'native/bin/initdb'), postgres: join(pkg, 'native/bin/postgres') };
    const home = tempDir('coffer-home-');
    await chmod(home, 0o711);
    const copyDir = join(home, 'postgres-binaries');

    const usable = await binariesRunnableBy(unreachable, runAs, copyDir);
    expect(usable.postgres).toBe(join(copyDir, 'bin/postgres'));
    const { stdout } = await run(usable.postgres, ['--version'], { uid: runAs.uid, gid: runAs.gid });
    expect(stdout).toMatch(/PostgreSQL\) 15\./);
    // The copy is whole: initdb finds its share files, the server its libraries.
    const server = await startEmbeddedPostgres({
      binaries: usable,
      dataDir: join(home, 'postgres'),
      port: await freePort(),
      password: 'a-long-enough-development-password',
      logFile: join(home, 'postgres.log'),
      runAs,
      env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' },
    });
    await ensureDatabase(server.url('postgres'), 'coffer');
    await server.stop();
    const copiedAt = statSync(join(copyDir, '.copied-from')).mtimeMs;
    expect(await binariesRunnableBy(unreachable, runAs, copyDir)).toEqual(usable);
    expect(statSync(join(copyDir, '.copied-from')).mtimeMs).toBe(copiedAt);
    // Installed where the user can reach them, they are used where they are.
    expect(await binariesRunnableBy(installed, runAs, join(home, 'unused'))).toEqual(installed);
    expect(existsSync(join(home, 'unused'))).toBe(false);
  }, 120_000);

  it.skipIf(!runsAsRoot)('says what to do when the home itself is out of the postgres user\'s reach', async () => {
    const hidden = tempDir('coffer-hidden-');
    await expect(checkReachable(join(hidden, '.coffer'), await postgresUser(), false)).rejects.toThrow(/COFFER_HOME/);
  });
});

describe('nats-server child', () => {
  const binary = findOnPath('nats-server', process.env.PATH) ?? (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : undefined);

  it.skipIf(!binary)('serves JetStream with its store in the given folder and stops on request', async () => {
    const home = tempDir('coffer-nats-');
    const server = await startNatsServer({ binary: binary!, port: await freePort(), storeDir: join(home, 'nats'), logFile: join(home, 'nats.log'), env: { PATH: '' } });
    try {
      const nc = await connect({ servers: server.url });
      const info = await (await jetstreamManager(nc)).getAccountInfo();
      expect(info.api.total).toBeGreaterThanOrEqual(0);
      await nc.close();
      expect(existsSync(join(home, 'nats', 'jetstream'))).toBe(true);
    } finally {
      await server.stop();
    }
    expect(alive(server.process.pid)).toBe(false);
  }, 60_000);
});
