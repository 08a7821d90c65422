import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/** A server process the launcher started and must stop: its output goes to a log file and a short tail. */
export interface ManagedProcess {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Resolves when the process has exited (or could not be spawned). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>;
  running(): boolean;
  /** The last lines it wrote, for an error message. */
  tail(lines?: number): string;
  /** Calls `fn` with every line it writes from now on. */
  onLine(fn: (line: string) => void): void;
  /** Sends `signal` to the process, then SIGKILL to its process group if it has not exited after `graceMs`. */
  stop(signal: NodeJS.Signals, graceMs: number): Promise<void>;
}

export interface ManagedProcessOptions {
  env: NodeJS.ProcessEnv;
  logFile: string;
  /** Run as this user (a launcher under root starting Postgres). */
  runAs?: { uid: number; gid: number };
  /** A process group of its own (the default); false keeps it in the caller's, so a Ctrl-C reaches it too. */
  detached?: boolean;
}

const TAIL_LINES = 40;

/**
 * Spawns a server, by default in a process group of its own: a Ctrl-C in the terminal then reaches
 * the launcher alone, which stops the servers in order instead of all of them at once.
 */
export function spawnManaged(name: string, command: string, args: string[], options: ManagedProcessOptions): ManagedProcess {
  const log = createWriteStream(options.logFile, { flags: 'a', mode: 0o600 });
  const child = spawn(command, args, {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? true,
    ...(options.runAs && { uid: options.runAs.uid, gid: options.runAs.gid }),
  });
  const lines: string[] = [];
  const listeners: ((line: string) => void)[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let pending = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      log.write(chunk);
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        if (lines.length > TAIL_LINES) lines.shift();
        for (const fn of listeners) fn(line);
      }
    });
  }
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => {
      done = true;
      log.end();
      resolve({ code: null, signal: null, error });
    });
    child.once('exit', (code, signal) => {
      done = true;
      log.end();
      resolve({ code, signal });
    });
  });
  return {
    name,
    pid: child.pid ?? 0,
    child,
    exited,
    running: () => !done,
    tail: (n = TAIL_LINES) => lines.slice(-n).join('\n'),
    onLine: (fn) => void listeners.push(fn),
    async stop(signal, graceMs) {
      if (done) return;
      // The server alone: it shuts down its own children (Postgres' backends) in its own order.
      child.kill(signal);
      const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Signals the child's whole process group (the child and anything it forked), falling back to the child alone. */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}
