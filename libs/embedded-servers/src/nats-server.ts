import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { spawnManaged, type ManagedProcess } from './managed-process';

const run = promisify(execFile);

/** What to tell a user who has neither a `nats-server` on the PATH nor a NATS_URL. */
export const natsServerMissing = [
  'nats-server was not found on the PATH. The development stack runs one with JetStream; get it with',
  '  apt-get install nats-server      (Debian, Ubuntu)',
  '  brew install nats-server         (macOS)',
  'or set NATS_URL to a NATS server with JetStream enabled (e.g. nats://127.0.0.1:4222).',
].join('\n');

/** The first executable `name` in the directories of `pathSetting` (a PATH value), if any. */
export function findOnPath(name: string, pathSetting: string | undefined): string | undefined {
  for (const dir of (pathSetting ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface NatsServerOptions {
  binary: string;
  port: number;
  storeDir: string;
  logFile: string;
  env: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
  /** A process group of its own (the default); false keeps it in the caller's. */
  detached?: boolean;
}

/** A running `nats-server` child. */
export interface NatsServer {
  process: ManagedProcess;
  url: string;
  version: string;
  stop(): Promise<void>;
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts `nats-server` with JetStream on 127.0.0.1, its store under `storeDir`. */
export async function startNatsServer(options: NatsServerOptions): Promise<NatsServer> {
  const { stdout } = await run(options.binary, ['--version'], { env: options.env });
  const version = /v?(\d+\.\d+\.\d+)/.exec(stdout)?.[1] ?? stdout.trim();
  await mkdir(options.storeDir, { recursive: true, mode: 0o700 });
  const proc = spawnManaged('nats-server', options.binary, ['-a', '127.0.0.1', '-p', String(options.port), '-js', '-sd', options.storeDir], {
    env: options.env,
    logFile: options.logFile,
    detached: options.detached,
  });
  let ready = false;
  proc.onLine((line) => {
    if (line.includes('Server is ready')) ready = true;
  });
  const stop = () => proc.stop('SIGTERM', 10_000);
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  try {
    while (!(ready && (await answers(options.port)))) {
      if (!proc.running()) {
        const { error } = await proc.exited;
        throw new Error(`nats-server ${error ? `could not be started (${error.message})` : 'exited during start-up'}:\n${proc.tail()}`);
      }
      if (Date.now() > deadline) throw new Error(`nats-server was not ready within ${options.startTimeoutMs ?? 30_000} ms:\n${proc.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { process: proc, url: `nats://127.0.0.1:${options.port}`, version, stop };
}
