import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, createRedactor, REDACTED } from '@coffer/telemetry';
import { airbyteConnectors, sweepRunFolders } from './airbyte-command';
import type { StateMessage, SyncMessage } from './airbyte-protocol';

// The runner against the test source as a real child process (node with tsx); no database needed.

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..', '..');
const tsx = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href;
const apiKey = `canary-key-${randomUUID()}`;

describe('Airbyte-protocol command connectors', () => {
  let workDir = '';
  const lines: string[] = [];
  const redactor = createRedactor();
  let connectors: ReturnType<typeof airbyteConnectors>;
  const runFolders = async () => (await readdir(workDir).catch(() => [] as string[])).filter((n) => n.startsWith('run-'));
  const source = () => connectors.sources['airbyte:test-source']!;

  beforeAll(async () => {
    workDir = join(await mkdtemp(join(tmpdir(), 'coffer-airbyte-int-')), 'work');
    process.env.COFFER_WORKER_ONLY_CANARY = apiKey;
    const logger = createLogger({ service: 'sync-worker', level: 'debug', redactor, destination: { write: (line: string) => void lines.push(line) } });
    connectors = airbyteConnectors({ commands: { 'test-source': [process.execPath, '--import', tsx, join(here, 'testing/test-source.ts')] }, workDir, logger, redactor, killGraceMs: 1_000 });
    redactor.register(apiKey);
  });

  afterAll(async () => {
    delete process.env.COFFER_WORKER_ONLY_CANARY;
    redactor.unregister(apiKey);
    await rm(dirname(workDir), { recursive: true, force: true });
  });

  it('checks, discovers, and reads with state: only records after the cursor, STATE messages in order, a minimal environment', async () => {
    const config = { api_key: apiKey, records_per_stream: 7, state_every: 2 };
    await source().check(config, AbortSignal.timeout(60_000));
    const catalog = await source().configure!(config, AbortSignal.timeout(60_000));
    expect(catalog.streams[0]).toMatchObject({ stream: { name: 'items' }, sync_mode: 'incremental', destination_sync_mode: 'append_dedup', primary_key: [['id']] });
    const state: StateMessage = { type: 'STREAM', stream: { stream_descriptor: { name: 'items' }, stream_state: { cursor: 3 } } };
    const messages: SyncMessage[] = [];
    for await (const m of source().readMessages!(config, catalog, [state], AbortSignal.timeout(60_000))) messages.push(m);
    const ids = messages.flatMap((m) => (m.type === 'RECORD' ? [m.record.data.id] : []));
    expect(ids).toEqual([4, 5, 6, 7]);
    const cursors = messages.flatMap((m) => (m.type === 'STATE' ? [(m.state.stream!.stream_state as { cursor: number }).cursor] : []));
    expect(cursors).toEqual([5, 7, 7]);
    const environment = lines.find((l) => l.includes('environment: '));
    expect(JSON.parse(environment!).msg).toBe('environment: HOME,LANG,PATH,TMPDIR');
    expect(await runFolders()).toEqual([]);
  }, 120_000);

  it('stops the child and removes its run folder when the run is aborted mid-read', async () => {
    const config = { api_key: apiKey, records_per_stream: 100_000, records_per_second: 20 };
    const catalog = await source().configure!(config, AbortSignal.timeout(60_000));
    const controller = new AbortController();
    let seen = 0;
    const reading = (async () => {
      for await (const m of source().readMessages!(config, catalog, [], controller.signal)) {
        if (m.type === 'RECORD' && ++seen === 3) {
          expect(await runFolders()).toHaveLength(1);
          controller.abort('timeout');
        }
      }
    })();
    await expect(reading).rejects.toThrow('airbyte:test-source read: stopped');
    expect(await runFolders()).toEqual([]);
    const children: string[] = [];
    for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes(workDir)) children.push(pid);
    }
    expect(children).toEqual([]);
  }, 120_000);

  it("redacts a hostile connector's stdout, stderr, LOG and TRACE before logging, and in its failure", async () => {
    const config = { api_key: apiKey, hostile: true };
    await expect(source().configure!(config, AbortSignal.timeout(60_000))).rejects.toThrow(`airbyte:test-source discover failed: the API refused ${REDACTED}`);
    const logged = lines.join('\n');
    expect(logged).toContain(`debug: api_key=${REDACTED}`);
    expect(logged).toContain(`connecting with ${REDACTED}`);
    expect(logged).not.toContain(apiKey);
    expect(await runFolders()).toEqual([]);
  }, 120_000);

  it('sweeps the run folders of processes no longer alive, and its own only at start-up', async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    await mkdir(join(workDir, `run-${dead}-abc`), { recursive: true });
    await mkdir(join(workDir, `run-${process.pid}-def`));
    await mkdir(join(workDir, 'unrelated'));
    expect(await sweepRunFolders(workDir, false)).toBe(1);
    expect((await readdir(workDir)).sort()).toEqual([`run-${process.pid}-def`, 'unrelated']);
    expect(await sweepRunFolders(workDir, true)).toBe(1);
    expect(await readdir(workDir)).toEqual(['unrelated']);
  });
});
