import { stackServices, type Stack, type StackService } from '@coffer/cli';
import { healthStatus } from '../grpc-probes';

/** A service process that ended without the suite asking it to. */
export interface UnexpectedExit {
  service: StackService;
  at: number;
  code: number | null;
  signal: string | null;
  /** The last log messages (message text and error codes only; never a field's value). */
  lastMessages: string[];
}

/** Watches the stack's processes like an orchestrator would: restarts what dies, records what it did not cause. */
export interface Supervisor {
  /** Unexpected exits so far (start-up failures included). */
  exits: UnexpectedExit[];
  /** SIGKILLs the suite sent, by service. */
  kills: Record<StackService, number>;
  /** Sends SIGKILL to `name` (an exit the suite caused) and waits for it to end. */
  kill(name: StackService): Promise<void>;
  /** Stops `name` gracefully (SIGTERM, an exit the suite caused). */
  stop(name: StackService): Promise<void>;
  /** Starts `name` again on its port, retrying a failed start; resolves when it listens. */
  restart(name: StackService): Promise<void>;
  /** Resolves true when each of `names` (all by default) answers Health SERVING, or false after `timeoutMs`. */
  serving(timeoutMs: number, names?: readonly StackService[]): Promise<boolean>;
  /** Stops watching (before the stack is stopped, so its own SIGTERMs are not counted). */
  close(): void;
}

const RESTART_ATTEMPTS = 20;

/**
 * Why a process ended, from its last output: the message and error code of recent JSON log lines,
 * and of a crash's stack trace the error line, the "Emitted 'error' event on …" line and the error
 * code. Never a field's value.
 */
export function lastMessages(lines: readonly string[]): string[] {
  const out: string[] = [];
  for (const line of lines.slice(-60)) {
    if (line.startsWith('{')) {
      try {
        const parsed = JSON.parse(line) as { msg?: unknown; level?: unknown; err?: { type?: unknown; code?: unknown } };
        if (typeof parsed.level === 'number' && parsed.level < 40) continue;
        const err = parsed.err ? ` (${[parsed.err.type, parsed.err.code].filter((v) => typeof v === 'string').join(' ')})` : '';
        out.push(`${typeof parsed.msg === 'string' ? parsed.msg : '?'}${err}`);
        continue;
      } catch {
        // the start of a multi-line object printed by Node, not a log line
      }
    }
    const t = line.trim();
    if (/^([A-Za-z]*Error\b|error: |Emitted '\w+' event|code: ')/.test(t)) out.push(t.slice(0, 160));
  }
  return out.slice(-4);
}

/** Supervises `stack`: a process that exits unasked is recorded and restarted at once. */
export function superviseStack(stack: Stack): Supervisor {
  const exits: UnexpectedExit[] = [];
  const kills = Object.fromEntries(stackServices.map((s) => [s, 0])) as Record<StackService, number>;
  const expected = new Set<StackService>();
  const inRestart = new Map<StackService, Promise<void>>();
  let closed = false;

  function watch(name: StackService): void {
    const proc = stack.services[name].process;
    proc.once('exit', (code, signal) => {
      if (closed || stack.services[name].process !== proc) return;
      if (expected.delete(name)) return;
      exits.push({ service: name, at: Date.now(), code, signal, lastMessages: lastMessages(stack.services[name].output) });
      void restart(name).catch(() => undefined);
    });
  }

  function restart(name: StackService): Promise<void> {
    const running = inRestart.get(name);
    if (running) return running;
    const p = (async () => {
      for (let attempt = 1; ; attempt++) {
        if (closed) return;
        try {
          await stack.restart(name);
          watch(name);
          return;
        } catch {
          // A start that fails is an exit the suite did not cause, like a crash loop under an orchestrator.
          exits.push({ service: name, at: Date.now(), code: stack.services[name].process.exitCode, signal: null, lastMessages: lastMessages(stack.services[name].output) });
          if (attempt >= RESTART_ATTEMPTS) throw new Error(`${name} did not start after ${attempt} attempts`);
          await new Promise((r) => setTimeout(r, Math.min(5_000, 500 * attempt)));
        }
      }
    })().finally(() => inRestart.delete(name));
    inRestart.set(name, p);
    return p;
  }

  for (const name of stackServices) watch(name);

  return {
    exits,
    kills,
    async kill(name) {
      await inRestart.get(name)?.catch(() => undefined);
      const proc = stack.services[name].process;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      expected.add(name);
      kills[name]++;
      await stack.kill(name, 'SIGKILL');
    },
    async stop(name) {
      await inRestart.get(name)?.catch(() => undefined);
      const proc = stack.services[name].process;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      expected.add(name);
      await stack.stopOne(name);
    },
    restart,
    async serving(timeoutMs, names = stackServices) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const states = await Promise.all(
          names.map((s) => (inRestart.has(s) ? Promise.resolve('RESTARTING') : healthStatus(stack.services[s].address).catch(() => 'DOWN'))),
        );
        if (states.every((s) => s === 'SERVING')) return true;
        await new Promise((r) => setTimeout(r, 200));
      }
      return false;
    },
    close() {
      closed = true;
    },
  };
}
