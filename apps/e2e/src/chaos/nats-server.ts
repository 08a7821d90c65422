import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcpConnect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A nats-server process of the suite's own, on 127.0.0.1, with JetStream in a directory of its own. */
export interface NatsServerProcess {
  url: string;
  port: number;
  storeDir: string;
  /** The PID of the running server, or undefined while it is stopped. */
  pid(): number | undefined;
  /** Stops the server by its PID (SIGTERM, then SIGKILL after 10 s). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same store directory. */
  start(): Promise<void>;
  /** Stops it for good and removes its store directory unless `keep`. */
  dispose(keep: boolean): Promise<void>;
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

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts `binary` (e.g. /usr/sbin/nats-server) with JetStream on a free loopback port. */
export async function startNatsServer(binary: string): Promise<NatsServerProcess> {
  const port = await freePort();
  const storeDir = await mkdtemp(join(tmpdir(), 'coffer-chaos-nats-'));
  let child: ChildProcess | undefined;
  const tail: string[] = [];

  async function start(): Promise<void> {
    if (child) throw new Error('nats-server is already running');
    const proc = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (chunk: string) => {
      tail.push(...chunk.split('\n').filter(Boolean));
      tail.splice(0, Math.max(0, tail.length - 20));
    });
    child = proc;
    proc.once('exit', () => {
      if (child === proc) child = undefined;
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`nats-server exited at start:\n${tail.join('\n')}`);
      // The client port opens once JetStream has recovered its store.
      if (await answers(port)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nats-server did not answer on 127.0.0.1:${port} within 30 s:\n${tail.join('\n')}`);
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.pid === undefined) return;
    const pid = proc.pid;
    await new Promise<void>((resolve) => {
      const hard = setTimeout(() => process.kill(pid, 'SIGKILL'), 10_000);
      proc.once('exit', () => {
        clearTimeout(hard);
        resolve();
      });
      process.kill(pid, 'SIGTERM');
    });
  }

  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    pid: () => child?.pid,
    stop,
    start,
    async dispose(keep) {
      await stop();
      if (!keep) await rm(storeDir, { recursive: true, force: true });
    },
  };
}
