import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger, Redactor } from '@coffer/telemetry';
import { configureCatalog, isStateMessage, parseMessage, stateFileContent, type AirbyteMessage, type ConfiguredCatalog, type StateMessage, type SyncMessage } from './airbyte-protocol';
import { ConnectorError, type Catalog, type DestinationConnector, type SourceConnector } from './connector';
import type { ConnectorRegistry } from './registry';

/** The prefix of the connector names that run a registered Airbyte-protocol command: `airbyte:<name>`. */
export const AIRBYTE_PREFIX = 'airbyte:';
/** The longest line a connector may print (a record); a longer one fails the run rather than the worker's memory. */
const MAX_LINE = 16 * 1024 * 1024;
/** What of one stderr or LOG line reaches the log, after redacting. */
const MAX_LOGGED = 2_000;
const RUN_DIR = /^run-(\d+)-/;

/** How the worker runs Airbyte-protocol commands. */
export interface AirbyteCommandOptions {
  /**
   * The commands an operator registered, by name: an absolute executable path and its fixed
   * arguments. A definition names one as `airbyte:<name>`; a tenant never chooses what runs.
   */
  commands: Record<string, readonly string[]>;
  /** The folder under which each run gets a fresh folder (0700) for its config, catalog and state files. */
  workDir: string;
  logger: Logger;
  /** Applied to every stderr, LOG, TRACE and plain line before it is logged or becomes a reason. */
  redactor: Redactor;
  /** Wait between SIGTERM and SIGKILL when a run is stopped. */
  killGraceMs?: number;
}

/**
 * Connectors for the registered Airbyte-protocol commands: each name is both a source and a
 * destination (`spec`, `check`, `discover`, `read`, `write`); the protocol decides which works.
 */
export function airbyteConnectors(options: AirbyteCommandOptions): ConnectorRegistry & { sweep(startup?: boolean): Promise<number> } {
  const sources: Record<string, SourceConnector> = {};
  const destinations: Record<string, DestinationConnector> = {};
  for (const [name, argv] of Object.entries(options.commands)) {
    const runner = commandRunner(`${AIRBYTE_PREFIX}${name}`, argv, options);
    sources[`${AIRBYTE_PREFIX}${name}`] = runner.source;
    destinations[`${AIRBYTE_PREFIX}${name}`] = runner.destination;
  }
  return { sources, destinations, sweep: (startup = false) => sweepRunFolders(options.workDir, startup, options.logger) };
}

/**
 * Removes the run folders a killed worker left behind: those of processes no longer alive, and at
 * start-up this process's own id too (a restarted container reuses its pid). Returns how many.
 */
export async function sweepRunFolders(workDir: string, startup: boolean, logger?: Logger): Promise<number> {
  let names: string[];
  try {
    names = await readdir(workDir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const pid = Number(RUN_DIR.exec(name)?.[1]);
    if (!pid || (pid === process.pid ? !startup : isAlive(pid))) continue;
    await rm(join(workDir, name), { recursive: true, force: true });
    removed++;
  }
  if (removed > 0) logger?.info({ removed }, 'removed connector run folders a stopped worker left behind');
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The environment a connector gets: no variable of the worker's own (none of its settings or secrets). */
function childEnv(dir: string): Record<string, string> {
  return { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: dir, TMPDIR: dir, LANG: 'C.UTF-8' };
}

interface RunningChild {
  /** Protocol messages other than LOG and TRACE, in order; ends when stdout closes, then throws if the child failed. */
  messages: AsyncGenerator<AirbyteMessage>;
  process: ChildProcess;
  stop(): void;
}

function commandRunner(connector: string, argv: readonly string[], options: AirbyteCommandOptions) {
  const { logger, redactor, workDir } = options;
  const grace = options.killGraceMs ?? 5_000;
  const bounded = (text: string) => redactor.redact(text).slice(0, MAX_LOGGED);

  /** A fresh 0700 folder holding the run's files (0600), removed when `fn` ends, however it ends. */
  async function inRunFolder<T>(files: Record<string, unknown>, fn: (dir: string, paths: Record<string, string>) => Promise<T>): Promise<T> {
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(workDir, `run-${process.pid}-`));
    try {
      const paths: Record<string, string> = {};
      for (const [name, content] of Object.entries(files)) {
        paths[name] = join(dir, `${name}.json`);
        await writeFile(paths[name], JSON.stringify(content), { mode: 0o600, flag: 'wx' });
      }
      return await fn(dir, paths);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  function start(verb: string, args: string[], dir: string, signal: AbortSignal, stdin: boolean): RunningChild {
    const child = spawn(argv[0]!, [...argv.slice(1), verb, ...args], { cwd: dir, env: childEnv(dir), stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError = err));
    child.stdin?.on('error', () => undefined);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, sig) => resolve({ code, signal: sig })));
    let killTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (child.exitCode !== null || child.signalCode !== null || killTimer) return;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), grace);
      killTimer.unref();
    };
    void exited.then(() => clearTimeout(killTimer));
    const onAbort = () => stop();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) stop();
    void (async () => {
      for await (const line of lines(child.stderr!)) if (line.trim()) logger.info({ connector, verb, stream: 'stderr' }, bounded(line));
    })().catch(() => undefined);
    let traceError: string | undefined;
    async function* messages(): AsyncGenerator<AirbyteMessage> {
      try {
        for await (const line of lines(child.stdout!)) {
          const message = parseMessage(line);
          if (!message) {
            if (line.trim()) logger.info({ connector, verb, stream: 'stdout' }, bounded(line));
            continue;
          }
          if (message.type === 'LOG') {
            const level = String(message.log?.level ?? 'INFO').toUpperCase();
            const text = bounded(String(message.log?.message ?? ''));
            if (level === 'ERROR' || level === 'FATAL') logger.warn({ connector, verb }, text);
            else if (level === 'WARN') logger.warn({ connector, verb }, text);
            else logger.info({ connector, verb }, text);
            continue;
          }
          if (message.type === 'TRACE') {
            if (message.trace?.type === 'ERROR') {
              traceError = bounded(String(message.trace.error?.message ?? 'error'));
              logger.warn({ connector, verb, internal: bounded(String(message.trace.error?.internal_message ?? '')) }, `connector error: ${traceError}`);
            }
            continue;
          }
          yield message;
        }
        const { code, signal: killedBy } = await exited;
        if (spawnError) throw new ConnectorError(`${connector}: could not start its command (${(spawnError as NodeJS.ErrnoException).code ?? spawnError.name})`);
        if (signal.aborted) throw new ConnectorError(`${connector} ${verb}: stopped`);
        if (code !== 0) throw new ConnectorError(`${connector} ${verb} failed: ${traceError ?? (killedBy ? `killed by ${killedBy}` : `exited with code ${code}`)}`);
      } finally {
        signal.removeEventListener('abort', onAbort);
        // Left early (the consumer failed or stopped): the child must not outlive the run.
        stop();
        await exited;
      }
    }
    return { messages: messages(), process: child, stop };
  }

  /** Runs `verb` to its end and returns the first message of `type`. */
  async function ask(verb: string, type: string, config: Record<string, unknown>, signal: AbortSignal): Promise<AirbyteMessage> {
    return inRunFolder({ config }, async (dir, paths) => {
      let found: AirbyteMessage | undefined;
      for await (const m of start(verb, ['--config', paths.config!], dir, signal, false).messages) if (m.type === type && !found) found = m;
      if (!found) throw new ConnectorError(`${connector} ${verb}: no ${type} message`);
      return found;
    });
  }

  async function discover(config: Record<string, unknown>, signal: AbortSignal): Promise<Catalog & { streams: NonNullable<NonNullable<AirbyteMessage['catalog']>['streams']> }> {
    const m = await ask('discover', 'CATALOG', config, signal);
    const streams = m.catalog?.streams;
    if (!Array.isArray(streams) || streams.some((s) => !s || typeof s.name !== 'string')) throw new ConnectorError(`${connector} discover: the catalog has no valid streams`);
    return { streams: streams.map((s) => ({ ...s, json_schema: s.json_schema ?? {} })) };
  }

  async function check(config: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const m = await ask('check', 'CONNECTION_STATUS', config, signal);
    if (m.connectionStatus?.status !== 'SUCCEEDED') throw new ConnectorError(`${connector} check: ${bounded(String(m.connectionStatus?.message ?? 'failed'))}`);
  }

  async function* readMessages(config: Record<string, unknown>, catalog: ConfiguredCatalog, state: StateMessage[], signal: AbortSignal): AsyncGenerator<SyncMessage> {
    const files: Record<string, unknown> = { config, catalog };
    if (state.length > 0) files.state = stateFileContent(state);
    // A generator cannot yield from inside inRunFolder's callback: the folder lives as long as this generator.
    await mkdir(workDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(workDir, `run-${process.pid}-`));
    try {
      const args: string[] = [];
      for (const [name, content] of Object.entries(files)) {
        const path = join(dir, `${name}.json`);
        await writeFile(path, JSON.stringify(content), { mode: 0o600, flag: 'wx' });
        args.push(`--${name}`, path);
      }
      for await (const m of start('read', args, dir, signal, false).messages) {
        if (m.type === 'RECORD') {
          const r = m.record;
          if (!r || typeof r.stream !== 'string' || !r.data || typeof r.data !== 'object' || Array.isArray(r.data)) throw new ConnectorError(`${connector} read: a RECORD message without a stream or an object as data`);
          yield { type: 'RECORD', record: { stream: r.stream, ...(typeof r.namespace === 'string' && { namespace: r.namespace }), data: r.data as Record<string, unknown>, emitted_at: typeof r.emitted_at === 'number' ? r.emitted_at : Date.now() } };
        } else if (m.type === 'STATE') {
          if (!isStateMessage(m.state)) throw new ConnectorError(`${connector} read: a STATE message the worker cannot keep`);
          yield { type: 'STATE', state: m.state };
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  const source: SourceConnector = {
    check,
    discover,
    async configure(config, signal) {
      return configureCatalog((await discover(config, signal)).streams);
    },
    readMessages,
    async *read(config, signal) {
      const catalog = await source.configure!(config, signal);
      for await (const m of readMessages(config, catalog, [], signal)) if (m.type === 'RECORD') yield m.record.data;
    },
  };

  const destination: DestinationConnector = {
    check,
    async write(config, records, signal) {
      const catalog = { streams: [{ stream: { name: 'records', json_schema: {} }, sync_mode: 'full_refresh' as const, cursor_field: [], destination_sync_mode: 'append' as const, primary_key: [] }] };
      async function* asMessages(): AsyncGenerator<SyncMessage> {
        for await (const data of records) yield { type: 'RECORD', record: { stream: 'records', data, emitted_at: Date.now() } };
      }
      return destination.writeMessages!(config, catalog, asMessages(), async () => undefined, signal);
    },
    async writeMessages(config, catalog, messages, committed, outer) {
      return inRunFolder({ config, catalog }, async (dir, paths) => {
        const controller = new AbortController();
        const signal = AbortSignal.any([outer, controller.signal]);
        const child = start('write', ['--config', paths.config!, '--catalog', paths.catalog!], dir, signal, true);
        const stdin = child.process.stdin!;
        let records = 0;
        let sourceError: unknown;
        // Source → destination stdin, one JSON line at a time, waiting whenever the pipe is full.
        const pump = (async () => {
          try {
            for await (const m of messages) {
              if (m.type === 'RECORD') records++;
              try {
                if (!stdin.write(`${JSON.stringify(m)}\n`)) await once(stdin, 'drain', { signal });
              } catch {
                throw new ConnectorError(`${connector} write: stopped reading its input`);
              }
            }
          } catch (err) {
            // The source failed (or the destination went away): what was sent is still committed and
            // its states echoed, so a retry resumes from there; the source's error is reported after.
            sourceError = err;
          } finally {
            stdin.end();
          }
        })();
        let commitError: unknown;
        try {
          for await (const m of child.messages) {
            if (m.type !== 'STATE' || commitError) continue;
            if (!isStateMessage(m.state)) throw new ConnectorError(`${connector} write: a STATE message the worker cannot keep`);
            try {
              await committed(m.state);
            } catch (err) {
              commitError = err;
              controller.abort('state');
            }
          }
        } catch (err) {
          controller.abort('destination');
          await pump;
          if (commitError) throw commitError;
          // A destination that died mid-write leaves the source's EPIPE behind: its own failure is the reason.
          throw err;
        }
        await pump;
        if (commitError) throw commitError;
        if (sourceError) throw sourceError;
        return records;
      });
    },
  };
  return { source, destination };
}

/** The lines of a stream, pulled as they are read (so a slow consumer slows the child down), each bounded. */
async function* lines(stream: Readable): AsyncGenerator<string> {
  stream.setEncoding('utf8');
  let pending = '';
  for await (const chunk of stream as AsyncIterable<string>) {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
    if (pending.length > MAX_LINE) throw new ConnectorError(`a connector printed a line longer than ${MAX_LINE} bytes`);
  }
  if (pending) yield pending;
}
