import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { auditTargets, verifyAudit as verifyAuditChains } from './cli/commands-ops';
import { devCredentialFiles, generateDevCredentials } from './dev-credentials';
import { doctorCommand, doctorUsage } from './doctor';
import { migrateCommand, migrateUsage } from './migrate';
import { startDevStack, type DevStack } from './dev-stack';
import { cofferHome } from './home';
import { parseStackSettings } from './stack-settings';

const usage = `usage: coffer stack [--free-ports] [--verbose] | coffer dev-credentials [--force] | coffer verify-audit [schema...] | coffer doctor [--env <service>=<file>]... [--json] | coffer migrate [--check]

  stack   (npm start) a development stack: an embedded Postgres (127.0.0.1:54329) unless DATABASE_URL
          names one, a nats-server child with JetStream (127.0.0.1:42229) unless NATS_URL names one,
          then auth, secrets, config and sync-worker on ports 50051-50054. The first start creates the
          development credentials, keyring, an organization with an application and the built-in
          connector definitions; everything is kept in COFFER_HOME (default .coffer/), and later starts
          reuse it. --free-ports lets the OS choose every port; service logs go to COFFER_HOME/logs
          (--verbose also prints them). OTEL_* and LOG_LEVEL are passed to the services. Connectors
          may not reach loopback or private addresses (as in production) unless SYNC_WORKER_EGRESS_ALLOW
          lists them. Ctrl-C stops the services in reverse order, then NATS, then Postgres.
  dev-credentials [--force]
          write development credentials for docker compose into .coffer/ (env files, keyring);
          refuses to replace existing ones without --force.
  verify-audit [schema...]
          recompute the hash chain of each service's event log (default: auth secrets config sync)
          and report the first broken link; exits 1 if any chain is broken. The database: DATABASE_URL,
          else the development stack running from COFFER_HOME (as \`coffer audit verify\`).
  ${doctorUsage}
  ${migrateUsage}`;

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

async function stack(args: string[]): Promise<void> {
  const settings = parseStackSettings(process.env);
  const starting = new AbortController();
  let running: DevStack | undefined;
  let stopping = false;
  // A terminal's Ctrl-C reaches the launcher alone (the servers run in process groups of their own),
  // and npm forwards it again: the first signal stops everything in order, the rest are ignored.
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping …');
    if (!running) return starting.abort(new Error('stopped during start-up'));
    void running.stop().then(
      () => {
        console.log('stopped.');
        process.exit(0);
      },
      (err: unknown) => {
        console.error(`stopping failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  // After a SIGHUP the terminal is gone: a failed write must not end the launcher before it has stopped the servers.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  try {
    running = await startDevStack({
      settings,
      cwd: process.cwd(),
      freePorts: args.includes('--free-ports'),
      verbose: args.includes('--verbose'),
      runsAsRoot: process.getuid?.() === 0,
      out: (text) => console.log(text),
      warn: (text) => console.error(text),
      signal: starting.signal,
    });
  } catch (err) {
    if (starting.signal.aborted) {
      console.log('stopped.');
      process.exit(0);
    }
    throw err;
  }
}

async function verifyAudit(schemas: string[]): Promise<void> {
  const targets = await auditTargets(cofferHome(process.env.COFFER_HOME, process.cwd()), process.env, schemas.length ? schemas : undefined);
  const report = await verifyAuditChains(targets, (line) => console.log(line));
  if (!report.ok) process.exitCode = 1;
}

const command = process.argv[2];
if (command === 'stack') {
  stack(process.argv.slice(3)).catch((err: unknown) => {
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
} else if (command === 'migrate') {
  migrateCommand(process.argv.slice(3), process.env, (text) => console.log(text)).then(
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
