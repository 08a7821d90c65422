import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultNamespace, type MessagingNamespace } from '@coffer/contracts';
import {
  binariesRunnableBy,
  checkReachable,
  ensureDatabase,
  findOnPath,
  findPostgresBinaries,
  natsServerMissing,
  postgresUser,
  startEmbeddedPostgres,
  startNatsServer,
  type EmbeddedPostgres,
  type NatsServer,
} from '@coffer/embedded-servers';
import { builtinDefinitions } from './builtin-definitions';
import { generateDevCredentials, type DevCredentials } from './dev-credentials';
import { seedDevelopment, type DevelopmentSeed, type SeedResult } from './development-seed';
import { cofferHome, ensureHome, type CofferHome } from './home';
import { STACK_ENV_DIR_NAME, writeServiceEnvFiles } from './doctor';
import { startStack, stackServices, type Stack, type StackProcess, type StackProgress, type StackService } from './stack';
import type { StackSettings } from './stack-settings';

/** What connectors of a development stack may reach although it is loopback, unless `SYNC_WORKER_EGRESS_ALLOW` says otherwise. */
export const DEVELOPMENT_EGRESS_ALLOW = '127.0.0.1';

/** The ports of a development stack unless `--free-ports`: the services' usual ones (the edge's HTTP included), and servers clear of 5432/4222. */
export const defaultPorts = { auth: 50051, config: 50052, secrets: 50053, 'sync-worker': 50054, edge: 8080, postgres: 54329, nats: 42229 } as const;

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const serviceNames: Record<StackService, string> = {
  auth: 'coffer.auth.v1.AuthService',
  secrets: 'coffer.secrets.v1.SecretsService',
  config: 'coffer.config.v1.ConfigService',
  'sync-worker': 'coffer.sync.v1.SyncService',
};

export interface DevStackOptions {
  settings: StackSettings;
  cwd: string;
  /** Every port chosen by the OS (tests, or a second stack next to a first). */
  freePorts: boolean;
  /** Echo every service log line, not only warnings and errors. */
  verbose: boolean;
  runsAsRoot: boolean;
  /** Progress and the endpoints (stdout). */
  out: (text: string) => void;
  /** Service warnings and errors (stderr). */
  warn: (text: string) => void;
  /** Aborted (Ctrl-C) during start-up: what started is stopped and the start rejects. */
  signal: AbortSignal;
  /** Subject root and stream prefix; the default ones unless a test shares its NATS server. */
  namespace?: MessagingNamespace;
}

/** What `dev-credentials.json` holds: the credentials the database was sealed with, and what the first start made. */
export interface SavedStack {
  credentials: DevCredentials;
  /** The client credentials of each service identity (a copy of `credentials.clients`, for readers of the file). */
  clients: DevCredentials['clients'];
  /** The embedded Postgres superuser's password. */
  postgres?: { password: string };
  seed?: DevelopmentSeed;
  /** Where the services listened at the last start. */
  services?: Record<string, string>;
}

/** The file a running stack writes, so tools and tests find its endpoints and processes. */
export interface StackState {
  launcherPid: number;
  startedAt: string;
  endpoints: Record<StackProcess, string> & { postgres: string; nats: string };
  /** Process ids of the four services, the edge and the servers this stack started. */
  pids: Partial<Record<StackProcess | 'postgres' | 'nats-server', number>>;
}

/** A running development stack. */
export interface DevStack {
  home: CofferHome;
  stack: Stack;
  postgres?: EmbeddedPostgres;
  nats?: NatsServer;
  seed: SeedResult;
  state: StackState;
  /** Stops the services in reverse order, then NATS, then Postgres, and removes the state file. */
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(false)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readJson<T>(file: string): Promise<T | undefined> {
  return readFile(file, 'utf8').then((text) => JSON.parse(text) as T, (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

const writeSecretFile = (file: string, value: unknown) => writeFile(file, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** A pino JSON line at warn level or above, shortened for a terminal; other lines as they are. */
function logLineToShow(line: string, verbose: boolean): string | undefined {
  try {
    const entry = JSON.parse(line) as { level?: number; msg?: string; time?: unknown; pid?: unknown; hostname?: unknown; service?: unknown };
    if (typeof entry.level !== 'number') return verbose ? line : undefined;
    if (!verbose && entry.level < 40) return undefined;
    const { level, msg, time: _t, pid: _p, hostname: _h, service: _s, ...rest } = entry;
    const name = level >= 60 ? 'FATAL' : level >= 50 ? 'ERROR' : level >= 40 ? 'WARN' : level >= 30 ? 'INFO' : 'DEBUG';
    const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
    return `${name} ${msg ?? ''}${extra}`;
  } catch {
    // Not JSON: a crash before the logger existed, which the user must see.
    return line.trim() ? line : undefined;
  }
}

/**
 * Starts a development stack: an embedded Postgres and a `nats-server` (unless DATABASE_URL /
 * NATS_URL name servers), the four services, and on the first start the organization, application
 * and built-in definitions. Everything it writes stays in the home directory.
 */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const { settings, out } = options;
  const home = cofferHome(settings.COFFER_HOME, options.cwd);
  await ensureHome(home, options.runsAsRoot);

  const previous = await readJson<StackState>(home.stateFile);
  if (previous && previous.launcherPid !== process.pid && alive(previous.launcherPid)) {
    throw new Error(`a stack already runs from ${home.dir} (process ${previous.launcherPid}): stop it first (Ctrl-C in its terminal, or kill -INT ${previous.launcherPid})`);
  }
  if (previous) {
    const left = Object.entries(previous.pids).filter(([, pid]) => pid && alive(pid));
    if (left.length) options.warn(`an earlier stack from ${home.dir} did not stop cleanly; these processes may still run: ${left.map(([n, p]) => `${n} ${p}`).join(', ')}`);
    await rm(home.stateFile, { force: true });
  }

  // Everything that can be checked before anything starts, so a missing piece leaves nothing behind.
  const natsBinary = settings.NATS_URL ? undefined : findOnPath('nats-server', settings.PATH);
  if (!settings.NATS_URL && !natsBinary) throw new Error(natsServerMissing);
  const runAs = !settings.DATABASE_URL && options.runsAsRoot ? await postgresUser() : undefined;
  if (runAs) await checkReachable(home.dir, runAs, false);
  const found = settings.DATABASE_URL ? undefined : await findPostgresBinaries();
  const postgresBinaries = found && runAs ? await binariesRunnableBy(found, runAs, join(home.dir, 'postgres-binaries')) : found;

  let saved = await readJson<SavedStack>(home.credentialsFile);
  const clusterExists = await readFile(join(home.postgresDir, 'PG_VERSION')).then(() => true, () => false);
  if (postgresBinaries && clusterExists && !saved?.postgres) {
    throw new Error(
      `${home.postgresDir} holds a database sealed with credentials that ${home.credentialsFile} no longer has: move ${home.postgresDir} away to start afresh`,
    );
  }
  if (!saved) {
    const credentials = await generateDevCredentials();
    saved = { credentials, clients: credentials.clients };
  }
  if (postgresBinaries && !saved.postgres) saved.postgres = { password: randomBytes(24).toString('base64url') };
  await writeSecretFile(home.credentialsFile, saved);

  const ports = options.freePorts
    ? { auth: await freePort(), config: await freePort(), secrets: await freePort(), 'sync-worker': await freePort(), edge: await freePort(), postgres: await freePort(), nats: await freePort() }
    : { ...defaultPorts };
  if (!options.freePorts) {
    const needed: [string, number][] = [...stackServices, 'edge' as const].map((s) => [s, ports[s]]);
    if (postgresBinaries) needed.push(['postgres', ports.postgres]);
    if (natsBinary) needed.push(['nats-server', ports.nats]);
    const taken = [];
    for (const [name, port] of needed) if (await portTaken(port)) taken.push(`${port} (${name})`);
    if (taken.length) throw new Error(`port ${taken.join(', ')} already in use on 127.0.0.1: stop what listens there, or start with --free-ports`);
  }

  const steps = 2 + stackServices.length + 1 + 1;
  let step = 0;
  const line = (text: string) => out(`[${step}/${steps}] ${text}`);
  const cleanups: { name: string; stop: () => Promise<void> }[] = [];
  const logs: WriteStream[] = [];
  // Should the launcher itself die (an uncaught error), its servers, each in a process group of its
  // own, would outlive it: on exit it still asks each to shut down, without waiting.
  const lastWords: (() => void)[] = [];
  const onExit = () => lastWords.forEach((fn) => fn());
  process.once('exit', onExit);
  const stopAll = async () => {
    while (cleanups.length) {
      const { name, stop } = cleanups.pop()!;
      const began = Date.now();
      await stop();
      if (name) out(`stopped ${name} (${seconds(Date.now() - began)})`);
    }
    await Promise.all(logs.map((log) => new Promise((r) => log.end(r))));
    await rm(home.stateFile, { force: true });
    process.removeListener('exit', onExit);
  };
  const env = { PATH: settings.PATH, LC_ALL: 'C' };

  try {
    out(`Starting the Coffer development stack; it keeps everything in ${home.dir}`);
    step++;
    let postgres: EmbeddedPostgres | undefined;
    let databaseUrl: string;
    let postgresEndpoint: string;
    if (postgresBinaries) {
      const began = Date.now();
      line(clusterExists ? 'Postgres (embedded): starting …' : `Postgres (embedded): creating a database cluster in ${home.postgresDir} …`);
      if (runAs?.created) line("Postgres does not run as root: it runs as the system user 'postgres', created now");
      postgres = await startEmbeddedPostgres({
        binaries: postgresBinaries,
        dataDir: home.postgresDir,
        port: ports.postgres,
        password: saved.postgres!.password,
        logFile: join(home.logsDir, 'postgres.log'),
        runAs,
        env,
      });
      cleanups.push({ name: 'Postgres', stop: () => postgres!.stop() });
      lastWords.push(() => postgres!.process.running() && postgres!.process.child.kill('SIGINT'));
      await ensureDatabase(postgres.url('postgres'), 'coffer');
      databaseUrl = postgres.url('coffer');
      postgresEndpoint = `127.0.0.1:${postgres.port}`;
      line(`Postgres ${postgres.version} (embedded) ready on ${postgresEndpoint} in ${seconds(Date.now() - began)}`);
    } else {
      databaseUrl = settings.DATABASE_URL!;
      const target = new URL(databaseUrl);
      const admin = new URL(databaseUrl);
      admin.pathname = '/postgres';
      await ensureDatabase(admin.toString(), decodeURIComponent(target.pathname.slice(1)) || 'coffer');
      postgresEndpoint = `${target.hostname}:${target.port || 5432}`;
      line(`Postgres at DATABASE_URL (${postgresEndpoint}): database ready`);
    }
    options.signal.throwIfAborted();

    step++;
    let nats: NatsServer | undefined;
    let natsUrl: string;
    if (natsBinary) {
      const began = Date.now();
      line('NATS (nats-server, JetStream): starting …');
      nats = await startNatsServer({ binary: natsBinary, port: ports.nats, storeDir: home.natsDir, logFile: join(home.logsDir, 'nats-server.log'), env });
      cleanups.push({ name: 'NATS', stop: () => nats!.stop() });
      lastWords.push(() => nats!.process.running() && nats!.process.child.kill('SIGTERM'));
      natsUrl = nats.url;
      line(`NATS ${nats.version} (nats-server, JetStream) ready on ${natsUrl} in ${seconds(Date.now() - began)}`);
    } else {
      natsUrl = settings.NATS_URL!;
      line(`NATS at NATS_URL (${natsUrl})`);
    }
    options.signal.throwIfAborted();

    const serviceLogs = Object.fromEntries(
      [...stackServices, 'edge' as const].map((name) => {
        const log = createWriteStream(join(home.logsDir, `${name}.log`), { flags: 'a', mode: 0o600 });
        logs.push(log);
        return [name, log];
      }),
    ) as Record<StackProcess, WriteStream>;
    const onProgress = (event: StackProgress) => {
      if (event.phase === 'starting') {
        step++;
        line(`${event.service}: starting …`);
      } else if (event.phase === 'listening') {
        line(`${event.service} listening on ${event.address} in ${seconds(event.ms ?? 0)}`);
      } else if (event.phase === 'stopped') {
        out(`stopped ${event.service} (${seconds(event.ms ?? 0)})`);
      }
    };
    // startStack stops the services it started when one fails or the start is aborted (Ctrl-C).
    const stack: Stack = await startStack({
      databaseUrl,
      natsUrl,
      namespace: options.namespace ?? defaultNamespace,
      ports: { auth: ports.auth, config: ports.config, secrets: ports.secrets, 'sync-worker': ports['sync-worker'], edge: ports.edge },
      // The HTTP edge (Connect, gRPC-Web, `/api/v1`, the widget), started last and stopped first.
      edge: true,
      credentials: saved.credentials,
      keyringFile: home.keyringFile,
      env: settings.serviceEnv,
      logLevel: settings.LOG_LEVEL,
      // A development stack lets connectors reach this machine (the demo's local API, the embedded
      // Postgres as a destination); production denies loopback unless allowed. `coffer doctor` warns.
      egressAllow: (settings.SYNC_WORKER_EGRESS_ALLOW ?? DEVELOPMENT_EGRESS_ALLOW).split(','),
      detached: true,
      signal: options.signal,
      onProgress,
      echo: (service, text) => {
        serviceLogs[service].write(`${text}\n`);
        const shown = logLineToShow(text, options.verbose);
        if (shown !== undefined) options.warn(`${service.padEnd(11)} | ${shown}`);
      },
    });
    // Its services print their own "stopped" lines (onProgress).
    cleanups.push({ name: '', stop: () => stack.stop() });
    // Each service's environment, for `coffer doctor` while the stack runs; removed when it stops.
    const envFiles = await writeServiceEnvFiles(join(home.dir, STACK_ENV_DIR_NAME), Object.fromEntries(stackServices.map((s) => [s, stack.services[s].env])));
    cleanups.push({ name: '', stop: () => envFiles.remove() });
    for (const svc of [...stackServices.map((s) => stack.services[s]), stack.edge!]) {
      const child = svc.process;
      lastWords.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGTERM'));
    }

    step++;
    const began = Date.now();
    line(saved.seed ? 'checking the built-in connector definitions …' : 'first start: creating an organization and an application, registering the built-in connector definitions …');
    const current = saved;
    const seed = await seedDevelopment({
      authAddress: stack.services.auth.address,
      configAddress: stack.services.config.address,
      operator: saved.credentials.clients.operator,
      existing: saved.seed,
      definitions: builtinDefinitions,
      onCreated: async (created) => writeSecretFile(home.credentialsFile, { ...current, seed: created }),
    });
    const registered = seed.definitions.filter((d) => d.registered).length;
    line(
      `${seed.organizationCreated ? `created organization "${seed.seed.organization.name}" and its application; ` : `organization "${seed.seed.organization.name}" from an earlier start; `}` +
        `${registered ? `registered ${registered} built-in connector definition(s)` : 'built-in connector definitions already registered'} (${seconds(Date.now() - began)})`,
    );
    saved = { ...saved, seed: seed.seed, services: Object.fromEntries(stackServices.map((s) => [s, stack.services[s].address])) };
    await writeSecretFile(home.credentialsFile, saved);
    await writeSecretFile(join(home.dir, 'application-token-request.json'), { client_id: seed.seed.application.clientId, client_secret: seed.seed.application.clientSecret });
    await writeSecretFile(join(home.dir, 'operator-token-request.json'), { ...toRequest(saved.credentials.clients.operator), audience: 'config' });

    const state: StackState = {
      launcherPid: process.pid,
      startedAt: new Date().toISOString(),
      endpoints: {
        ...(Object.fromEntries(stackServices.map((s) => [s, stack.services[s].address])) as Record<StackService, string>),
        edge: stack.edge!.address,
        postgres: postgresEndpoint,
        nats: natsUrl,
      },
      pids: {
        ...(Object.fromEntries(stackServices.map((s) => [s, stack.services[s].process.pid])) as Record<StackService, number>),
        edge: stack.edge!.process.pid,
        ...(postgres && { postgres: postgres.process.pid }),
        ...(nats && { 'nats-server': nats.process.pid }),
      },
    };
    await writeSecretFile(home.stateFile, state);
    out(banner(home, state, seed, Boolean(postgres), Boolean(nats)));
    return { home, stack, postgres, nats, seed, state, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function toRequest(client: { clientId: string; clientSecret: string }) {
  return { client_id: client.clientId, client_secret: client.clientSecret };
}

/** The endpoints and how to get a token, printed once the stack is up. */
export function banner(home: CofferHome, state: StackState, seed: SeedResult, embeddedPostgres: boolean, embeddedNats: boolean): string {
  const pad = (s: string) => s.padEnd(12);
  const curl = (file: string, method: string) =>
    [
      `  npx buf curl --protocol grpc --http2-prior-knowledge --schema ${join(root, 'proto')} \\`,
      `    -d @${join(home.dir, file)} \\`,
      `    http://${state.endpoints.auth}/coffer.auth.v1.AuthService/${method}`,
    ].join('\n');
  return [
    '',
    'Coffer is up (development stack).',
    '',
    ...stackServices.map((s) => `  ${pad(s)} ${state.endpoints[s].padEnd(17)} ${serviceNames[s]}`),
    `  ${pad('edge')} ${state.endpoints.edge.padEnd(17)} HTTP: Connect and gRPC-Web for auth and config, http://${state.endpoints.edge}/api/v1, the widget at /widget/`,
    `  ${pad('postgres')} ${state.endpoints.postgres.padEnd(17)} database coffer${embeddedPostgres ? ` (embedded; data in ${home.postgresDir})` : ' (DATABASE_URL)'}`,
    `  ${pad('nats')} ${state.endpoints.nats.padEnd(17)} JetStream${embeddedNats ? ` (nats-server; store in ${home.natsDir})` : ' (NATS_URL)'}`,
    '',
    `Organization "${seed.seed.organization.name}" (${seed.seed.organization.organizationId}), application ${seed.seed.application.clientId};`,
    `built-in connector definitions: ${seed.definitions.map((d) => `${d.name} (${d.connector}, ${d.definitionId})`).join(', ')}.`,
    `Client credentials (development only) are in ${home.credentialsFile}.`,
    '',
    'An application token (organization admin: workspaces, sources, destinations, connections):',
    curl('application-token-request.json', 'IssueApplicationToken'),
    "An operator token for config (connector definitions; for auth's admin methods use audience auth):",
    curl('operator-token-request.json', 'IssueServiceToken'),
    'Then call a service with -H "authorization: Bearer <access_token>".',
    '',
    `Logs: ${home.logsDir}. Ctrl-C stops everything.`,
  ].join('\n');
}
