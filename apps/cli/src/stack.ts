import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { MessagingNamespace } from '@coffer/contracts';
import { generateDevCertificates, type DevCertificates } from './dev-certificates';
import { generateDevCredentials, type DevCredentials } from './dev-credentials';

/** The four service apps, in start order. */
export const stackServices = ['auth', 'secrets', 'config', 'sync-worker'] as const;
export type StackService = (typeof stackServices)[number];
/** A process a stack may run: its four services, and the HTTP edge when asked for (`edge: true`). */
export type StackProcess = StackService | 'edge';

export interface StackOptions {
  databaseUrl: string;
  natsUrl: string;
  namespace: MessagingNamespace;
  /** Fixed ports; 0 (the default) lets each service pick one and report it. */
  ports?: Partial<Record<StackProcess, number>>;
  host?: string;
  logLevel?: string;
  /** Also write each line of output here (e.g. process.stdout for the CLI). */
  echo?: (service: StackProcess, line: string) => void;
  startTimeoutMs?: number;
  /** Credentials to reuse (a stack restarted against the same database needs its signing key and keyring); fresh ones by default. */
  credentials?: DevCredentials;
  /** Mutual TLS on every port: a throwaway CA and a certificate per service (and one for the operator). */
  tls?: boolean;
  /** Extra environment per service (e.g. a lower limit for a test); it overrides the stack's own. */
  serviceEnv?: Partial<Record<StackProcess, Record<string, string>>>;
  /**
   * The sync worker's `SYNC_WORKER_EGRESS_ALLOW`: CIDRs, addresses or host names (optionally with
   * `:port`) its connectors may reach although they are loopback, private or link-local. Unset, it
   * denies them all, as in production.
   */
  egressAllow?: readonly string[];
  /**
   * The local KMS keyring file: written from `credentials` when missing, else used as it is (KEK
   * rotations are written back to it). By default a temp folder holds it and `stop()` removes it.
   */
  keyringFile?: string;
  /** Environment every service gets (e.g. OTEL_* and LOG_LEVEL passed through by the launcher). */
  env?: Record<string, string>;
  /** Each service in a process group of its own, so a terminal's Ctrl-C reaches only the launcher, which stops them in order. */
  detached?: boolean;
  /**
   * Run each service from its bundle `<bundleDir>/apps/<name>/main.js` (made by `tools/build-app.mjs`,
   * as the image runs it) instead of its TypeScript through tsx, the default.
   */
  bundleDir?: string;
  /** Node options per service, put before the entry point (e.g. `--cpu-prof`, which NODE_OPTIONS cannot carry). */
  nodeArgs?: Partial<Record<StackProcess, string[]>>;
  /** Also start the HTTP edge (Connect, gRPC-Web, `/api/v1`, the widget) once the services are up; it stops first. */
  edge?: boolean;
  /** Told when each service starts, listens, stops. */
  onProgress?: (event: StackProgress) => void;
  /** Aborting it during start-up stops the services started so far; `startStack` then rejects. */
  signal?: AbortSignal;
}

/** One step of a stack's start or stop, for a progress display. */
export interface StackProgress {
  service: StackProcess;
  phase: 'starting' | 'listening' | 'stopping' | 'stopped';
  /** `host:port` once listening. */
  address?: string;
  /** Milliseconds the step took (listening, stopped). */
  ms?: number;
}

export interface RunningService {
  name: StackProcess;
  process: ChildProcess;
  port: number;
  address: string;
  /** Every line the process wrote to stdout and stderr. */
  output: string[];
  /** The settings (environment) the process was started with, e.g. for `coffer doctor`. */
  env: Record<string, string>;
}

export interface Stack {
  services: Record<StackService, RunningService>;
  /** The HTTP edge, when started with `edge: true`. */
  edge?: RunningService;
  credentials: DevCredentials;
  /** With `tls`: the CA and every certificate (services, `operator`), for clients of the stack. */
  tls?: DevCertificates;
  /** All output of all four processes so far. */
  output(): string;
  stop(): Promise<void>;
  /** Stops one service (for fault tests); `restart` brings it back on the same port. */
  stopOne(name: StackService): Promise<void>;
  /** Stops and starts one service again on the same port (for fault tests). */
  restart(name: StackService): Promise<RunningService>;
  /** Sends `signal` to one service (e.g. SIGKILL, a crash) and waits for it to exit; `restart` brings it back. */
  kill(name: StackService, signal: NodeJS.Signals): Promise<void>;
  /** Starts one more sync-worker replica (any free port); `stop()` stops it with the rest. */
  addSyncWorker(env?: Record<string, string>): Promise<RunningService>;
  /** Starts one more replica of any service (any free port), with the first one's settings; `stop()` stops it with the rest. */
  addReplica(name: StackService, env?: Record<string, string>): Promise<RunningService>;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function waitForPort(svc: RunningService, timeoutMs: number, signal?: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${svc.name} did not start within ${timeoutMs} ms:\n${svc.output.slice(-20).join('\n')}`)), timeoutMs);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
    const check = (line: string) => {
      try {
        const parsed = JSON.parse(line) as { event?: string; port?: number };
        if (parsed.event === 'listening' && typeof parsed.port === 'number') {
          clearTimeout(timer);
          resolve(parsed.port);
        }
      } catch {
        // not a JSON log line
      }
    };
    svc.output.forEach(check);
    svc.process.on('line', check);
    svc.process.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${svc.name} exited with code ${code} during start-up:\n${svc.output.slice(-20).join('\n')}`));
    });
  });
}

/**
 * The node arguments that run one service: its bundle when a bundle folder is given, else its
 * TypeScript through tsx; either way after the telemetry preload, which registers the gRPC and
 * Postgres instrumentation before the service loads them.
 */
export function serviceCommand(name: StackProcess, bundleDir?: string, nodeArgs: readonly string[] = []): string[] {
  const entry = bundleDir
    ? ['--import', pathToFileURL(join(bundleDir, 'preload.mjs')).href, join(bundleDir, 'apps', name, 'main.js')]
    : ['--import', 'tsx', '--import', pathToFileURL(join(root, 'libs/telemetry/src/preload.ts')).href, join(root, 'apps', name, 'src/main.ts')];
  return [...nodeArgs, ...entry];
}

function spawnService(name: StackProcess, env: Record<string, string>, options: StackOptions): RunningService {
  const { echo, detached = false } = options;
  const child = spawn(process.execPath, serviceCommand(name, options.bundleDir, options.nodeArgs?.[name]), {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  const svc: RunningService = { name, process: child, port: 0, address: '', output: [], env };
  for (const stream of [child.stdout, child.stderr]) {
    let pending = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        svc.output.push(line);
        echo?.(name, line);
        child.emit('line', line);
      }
    });
  }
  return svc;
}

async function stopService(svc: RunningService): Promise<void> {
  if (svc.process.exitCode !== null || svc.process.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const kill = setTimeout(() => svc.process.kill('SIGKILL'), 10_000);
    svc.process.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    svc.process.kill('SIGTERM');
  });
}

/** A port that was free a moment ago on `host` (the OS picks it; the service binds it right after). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts auth, secrets, config and sync-worker (and, with `edge`, the HTTP edge) as separate processes wired to each other. */
export async function startStack(options: StackOptions): Promise<Stack> {
  const credentials = options.credentials ?? (await generateDevCredentials());
  // A temp folder only for what lives as long as this stack (a test's keyring, TLS material).
  const dir = !options.keyringFile || options.tls ? await mkdtemp(join(tmpdir(), 'coffer-stack-')) : undefined;
  const removeDirAtExit = () => dir && rmSync(dir, { recursive: true, force: true });
  if (dir) process.once('exit', removeDirAtExit);
  const removeDir = async () => {
    process.removeListener('exit', removeDirAtExit);
    if (dir) await rm(dir, { recursive: true, force: true });
  };
  const keyringFile = options.keyringFile ?? join(dir!, 'keyring.json');
  await writeFile(keyringFile, credentials.keyringJson, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const host = options.host ?? '127.0.0.1';
  const timeout = options.startTimeoutMs ?? 60_000;
  const tls = options.tls ? await generateDevCertificates(dir!, [...stackServices, ...(options.edge ? ['edge'] : []), 'operator']) : undefined;
  const tlsEnv = (name: StackProcess): Record<string, string> =>
    tls ? { COFFER_TLS_CA_FILE: tls.caFile, COFFER_TLS_CERT_FILE: tls.certificates[name]!.certFile, COFFER_TLS_KEY_FILE: tls.certificates[name]!.keyFile } : {};
  const common = {
    // A developer's stack: the local KMS is the default and `coffer doctor` reports it as a warning only.
    COFFER_ENV: 'development',
    ...options.env,
    DATABASE_URL: options.databaseUrl,
    NATS_URL: options.natsUrl,
    COFFER_SUBJECT_ROOT: options.namespace.subjectRoot,
    COFFER_STREAM_PREFIX: options.namespace.streamPrefix,
    LOG_LEVEL: options.logLevel ?? options.env?.LOG_LEVEL ?? 'info',
  };
  const services = {} as Record<StackProcess, RunningService>;
  const envs = {} as Record<StackProcess, Record<string, string>>;
  const addr = (name: StackProcess) => `${host}:${services[name]?.port ?? options.ports?.[name] ?? 0}`;
  // auth starts first but calls config (to make end users' workspaces), so config's port is chosen up front.
  const configAddress = `${host}:${options.ports?.config || (await freePort(host))}`;
  // config starts before the sync worker but calls it (ProxyRequest, the token request of an OAuth code flow), so its port is chosen up front too.
  const syncWorkerAddress = `${host}:${options.ports?.['sync-worker'] || (await freePort(host))}`;

  const progress = options.onProgress ?? (() => undefined);
  const start = async (name: StackProcess) => {
    options.signal?.throwIfAborted();
    const began = Date.now();
    progress({ service: name, phase: 'starting' });
    const svc = spawnService(name, { ...envs[name], ...options.serviceEnv?.[name] }, options);
    services[name] = svc;
    svc.port = await waitForPort(svc, timeout, options.signal);
    svc.address = `${host}:${svc.port}`;
    progress({ service: name, phase: 'listening', address: svc.address, ms: Date.now() - began });
    return svc;
  };
  const replicas: RunningService[] = [];
  const stopInOrder = async () => {
    await Promise.all(replicas.map(stopService));
    for (const name of ['edge' as const, ...[...stackServices].reverse()]) {
      const svc = services[name];
      if (!svc) continue;
      const began = Date.now();
      progress({ service: name, phase: 'stopping' });
      await stopService(svc);
      progress({ service: name, phase: 'stopped', ms: Date.now() - began });
    }
  };

  try {
    envs.auth = {
      ...common,
      ...tlsEnv('auth'),
      AUTH_GRPC_ADDRESS: addr('auth'),
      AUTH_SIGNING_KEY: credentials.signingKeyJwk,
      CONFIG_ADDRESS: configAddress,
      AUTH_SERVICE_IDENTITIES: JSON.stringify(
        (['config', 'sync-worker', 'operator'] as const).map((role) => ({ ...credentials.clients[role], role })),
      ),
    };
    await start('auth');
    envs.secrets = {
      ...common,
      ...tlsEnv('secrets'),
      AUTH_ADDRESS: services.auth.address,
      SECRETS_GRPC_ADDRESS: addr('secrets'),
      SECRETS_KMS_PROVIDER: 'local',
      SECRETS_LOCAL_KEYRING_FILE: keyringFile,
    };
    await start('secrets');
    envs.config = {
      ...common,
      ...tlsEnv('config'),
      AUTH_ADDRESS: services.auth.address,
      SECRETS_ADDRESS: services.secrets.address,
      SYNC_WORKER_ADDRESS: syncWorkerAddress,
      CONFIG_GRPC_ADDRESS: configAddress,
      CONFIG_CLIENT_ID: credentials.clients.config.clientId,
      CONFIG_CLIENT_SECRET: credentials.clients.config.clientSecret,
    };
    await start('config');
    envs['sync-worker'] = {
      ...common,
      ...tlsEnv('sync-worker'),
      AUTH_ADDRESS: services.auth.address,
      SECRETS_ADDRESS: services.secrets.address,
      CONFIG_ADDRESS: services.config.address,
      SYNC_WORKER_GRPC_ADDRESS: syncWorkerAddress,
      SYNC_WORKER_CLIENT_ID: credentials.clients['sync-worker'].clientId,
      SYNC_WORKER_CLIENT_SECRET: credentials.clients['sync-worker'].clientSecret,
      ...(options.egressAllow && { SYNC_WORKER_EGRESS_ALLOW: options.egressAllow.join(',') }),
    };
    await start('sync-worker');
    if (options.edge) {
      // Only the settings the edge reads: it has no database and no NATS connection.
      envs.edge = {
        COFFER_ENV: common.COFFER_ENV,
        ...options.env,
        ...tlsEnv('edge'),
        LOG_LEVEL: common.LOG_LEVEL,
        AUTH_ADDRESS: services.auth.address,
        CONFIG_ADDRESS: services.config.address,
        EDGE_HTTP_ADDRESS: addr('edge'),
      };
      await start('edge');
    }
  } catch (err) {
    await stopInOrder();
    await removeDir();
    throw err;
  }

  const addReplica = async (name: StackService, env: Record<string, string> = {}): Promise<RunningService> => {
    const key = `${name.toUpperCase().replace('-', '_')}_GRPC_ADDRESS`;
    const svc = spawnService(name, { ...envs[name], ...options.serviceEnv?.[name], [key]: `${host}:0`, ...env }, options);
    replicas.push(svc);
    svc.port = await waitForPort(svc, timeout, options.signal);
    svc.address = `${host}:${svc.port}`;
    return svc;
  };

  return {
    services,
    edge: services.edge,
    credentials,
    tls,
    output: () => [...[...stackServices, 'edge' as const].flatMap((n) => services[n]?.output ?? []), ...replicas.flatMap((r) => r.output)].join('\n'),
    async stop() {
      await stopInOrder();
      await removeDir();
    },
    async stopOne(name) {
      await stopService(services[name]);
    },
    async restart(name) {
      const old = services[name];
      await stopService(old);
      const key = `${name.toUpperCase().replace('-', '_')}_GRPC_ADDRESS`;
      // A start that failed left no address: keep the one the service had before.
      envs[name] = { ...envs[name], [key]: old.address || envs[name][key]! };
      const svc = await start(name);
      svc.output.unshift(...old.output);
      return svc;
    },
    addSyncWorker: (env = {}) => addReplica('sync-worker', env),
    addReplica,
    async kill(name, signal) {
      const svc = services[name];
      if (svc.process.exitCode !== null || svc.process.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        svc.process.once('exit', () => resolve());
        svc.process.kill(signal);
      });
    },
  };
}
