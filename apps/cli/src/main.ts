import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { defaultNamespace } from '@coffer/contracts';
import { verifyEventChain } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { devCredentialFiles, generateDevCredentials, type DevCredentials } from './dev-credentials';
import { doctorCommand, doctorUsage, STACK_ENV_DIR, writeServiceEnvFiles } from './doctor';
import { startStack, type StackService } from './stack';

const usage = `usage: coffer stack | coffer dev-credentials [--force] | coffer verify-audit [schema...] | coffer doctor [--env <service>=<file>]... [--json]

  stack   start auth, secrets, config and sync-worker as processes on ports 50051-50054,
          against DATABASE_URL (default postgres://postgres@127.0.0.1:5432/coffer, created if missing)
          and NATS_URL (default nats://127.0.0.1:4222). Development credentials are generated on the
          first start, kept in .coffer/dev-credentials.json (mode 0600) and reused by later starts
          against the same database. Connectors may not reach loopback or private addresses (as in
          production) unless SYNC_WORKER_EGRESS_ALLOW lists them. Ctrl-C stops everything.
  dev-credentials [--force]
          write development credentials for docker compose into .coffer/ (env files, keyring);
          refuses to replace existing ones without --force.
  verify-audit [schema...]
          recompute the hash chain of each service's event log (default: auth secrets config sync)
          in DATABASE_URL and report the first broken link; exits 1 if any chain is broken.
  ${doctorUsage}`;

async function devCredentials(force: boolean): Promise<void> {
  // A second run would replace the signing key and keyring the compose volumes were sealed with.
  const existing = await readFile(join('.coffer', 'auth.env'), 'utf8').then(() => true, () => false);
  if (existing && !force) {
    console.error('.coffer/ already holds development credentials; the stack\'s database was sealed with them. Pass --force to replace them (and reset the database).');
    process.exit(1);
  }
  const creds = await generateDevCredentials();
  await mkdir('.coffer', { recursive: true, mode: 0o700 });
  const files = devCredentialFiles(creds);
  for (const [name, content] of Object.entries(files)) await writeFile(join('.coffer', name), content, { mode: 0o600 });
  console.log(`wrote ${Object.keys(files).map((f) => join('.coffer', f)).join(', ')}`);
}

async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = target.pathname.slice(1);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  // A connection the server drops fails the query in progress; without a listener it would also end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) await client.query(`create database "${name.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}

async function stack(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coffer';
  const natsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  await ensureDatabase(databaseUrl);
  const ports: Record<StackService, number> = { auth: 50051, config: 50052, secrets: 50053, 'sync-worker': 50054 };
  // The database outlives the processes: reuse the signing key, keyring and client secrets it was made with.
  const file = join('.coffer', 'dev-credentials.json');
  const saved = await readFile(file, 'utf8')
    .then((text) => (JSON.parse(text) as { credentials?: DevCredentials }).credentials)
    .catch(() => undefined);
  const running = await startStack({
    databaseUrl,
    natsUrl,
    namespace: defaultNamespace,
    ports,
    credentials: saved,
    egressAllow: process.env.SYNC_WORKER_EGRESS_ALLOW?.split(','),
    echo: (service, line) => process.stdout.write(`${service.padEnd(11)} | ${line}\n`),
  });
  await mkdir('.coffer', { recursive: true, mode: 0o700 });
  const services = Object.fromEntries(Object.values(running.services).map((s) => [s.name, s.address]));
  await writeFile(file, JSON.stringify({ clients: running.credentials.clients, services, credentials: running.credentials }, null, 2), { mode: 0o600 });
  // For `coffer doctor` while the stack runs; removed when it stops.
  const envFiles = await writeServiceEnvFiles(STACK_ENV_DIR, Object.fromEntries(Object.values(running.services).map((s) => [s.name, s.env])));
  console.log(`\nCoffer is up: ${Object.values(running.services).map((s) => `${s.name} ${s.address}`).join(', ')}`);
  console.log(`Client credentials (development only) are in ${file}.`);
  const stop = async () => {
    await running.stop();
    await envFiles.remove();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

async function verifyAudit(schemas: string[]): Promise<void> {
  const db = createDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/coffer');
  let broken = false;
  try {
    for (const schema of schemas.length ? schemas : ['auth', 'secrets', 'config', 'sync']) {
      const verdict = await verifyEventChain(db, schema);
      if (verdict.ok) {
        console.log(`${schema}: ${verdict.checked} events, chain intact`);
      } else {
        broken = true;
        const b = verdict.broken;
        console.log(`${schema}: BROKEN at global position ${b.globalPosition} (event ${b.eventId}, ${b.type} in ${b.streamId}): ${verdict.reason}; ${verdict.checked} events before it verified`);
      }
    }
  } finally {
    await db.destroy();
  }
  if (broken) process.exitCode = 1;
}

const command = process.argv[2];
if (command === 'stack') {
  stack().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
} else if (command === 'verify-audit') {
  verifyAudit(process.argv.slice(3)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  });
} else if (command === 'doctor') {
  doctorCommand(process.argv.slice(3), process.env, (text) => console.log(text)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(2);
    },
  );
} else if (command === 'dev-credentials') {
  devCredentials(process.argv.includes('--force')).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
} else {
  console.log(usage);
  process.exit(command ? 1 : 0);
}
