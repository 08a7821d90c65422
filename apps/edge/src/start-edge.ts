import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** An edge process started for a test or a launcher. */
export interface RunningEdge {
  process: ChildProcess;
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Every line the process wrote. */
  output: string[];
  stop(): Promise<void>;
}

const main = join(dirname(fileURLToPath(import.meta.url)), 'main.ts');

/** Starts `apps/edge/src/main.ts` with `env` (plus PATH) and resolves once it reports its port. */
export function startEdge(env: Record<string, string>, timeoutMs = 60_000): Promise<RunningEdge> {
  const child = spawn(process.execPath, ['--import', 'tsx', main], {
    env: { PATH: process.env.PATH ?? '', EDGE_HTTP_ADDRESS: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`the edge did not start within ${timeoutMs} ms:\n${output.slice(-20).join('\n')}`));
    }, timeoutMs);
    for (const stream of [child.stdout, child.stderr]) {
      let pending = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          output.push(line);
          try {
            const parsed = JSON.parse(line) as { event?: string; port?: number };
            if (parsed.event === 'listening' && typeof parsed.port === 'number') {
              clearTimeout(timer);
              resolve({ process: child, port: parsed.port, url: `http://127.0.0.1:${parsed.port}`, output, stop });
            }
          } catch {
            // not a JSON log line
          }
        }
      });
    }
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the edge exited with code ${code} during start-up:\n${output.slice(-20).join('\n')}`));
    });
  });
}
