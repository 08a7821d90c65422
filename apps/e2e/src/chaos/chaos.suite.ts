import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { adminDatabaseUrl, createTestDatabase, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { actorEvents, observerDb, orphansIn, outboxIds, probeStuck, readBack, shreddingQueued, type ObserverDb } from './checks';
import { callRetrying, chaosClients, type ChaosClients } from './clients';
import { compareWithStream, failuresOf, renderTable, seconds, totalRow, type ReportRow } from './measure';
import { startNatsServer, type NatsServerProcess } from './nats-server';
import { concurrencyScenario, down, killScenario, natsScenario, postgresScenario, redeliveryScenario, worst, type ChaosContext, type ScenarioResult } from './scenarios';
import { loadChaosSettings } from './settings';
import { createStreamTally, tallied } from './stream-tally';
import { superviseStack, type Supervisor } from './supervisor';
import { chaosSpec, seededRandom } from './workload';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const settings = loadChaosSettings(process.env);
const suiteStartedAt = Date.now();

function log(line: string): void {
  process.stdout.write(`[chaos ${seconds(Date.now() - suiteStartedAt).padStart(8)}] ${line}\n`);
}

let nats: NatsServerProcess | undefined;
let db: TestDatabase | undefined;
let stack: Stack | undefined;
let supervisor: Supervisor | undefined;
let clients: ChaosClients | undefined;
let observer: ObserverDb | undefined;
let source: Server | undefined;

afterAll(async () => {
  supervisor?.close();
  clients?.close();
  await stack?.stop();
  await nats?.dispose(settings.CHAOS_KEEP === '1');
  await new Promise<void>((r) => (source ? source.close(() => r()) : r()));
  await observer?.close();
  if (settings.CHAOS_KEEP === '1') log(`kept database ${db?.name} and NATS store ${nats?.storeDir}`);
  else await db?.drop();
}, 120_000);

it('keeps every acknowledged write, once, with no orphan, stuck actor or dead process, under SIGKILL, NATS and Postgres faults', async () => {
  log(`seed ${settings.CHAOS_SEED}; ${settings.CHAOS_WRITES} writes by ${settings.CHAOS_CLIENTS} clients, ${settings.CHAOS_KILLS} kills`);
  const random = seededRandom(settings.CHAOS_SEED);
  nats = await startNatsServer(settings.CHAOS_NATS_SERVER);
  log(`nats-server pid ${nats.pid()} on ${nats.url}, store ${nats.storeDir}`);
  db = await createTestDatabase('coffer_chaos');
  const namespace: MessagingNamespace = uniqueNamespace();

  const hits = new Map<string, number>();
  source = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([1, 2, 3].map((i) => ({ fetch: n, i }))));
  });
  await new Promise<void>((r) => source!.listen(0, '127.0.0.1', r));
  const sourcePort = (source.address() as AddressInfo).port;
  const pg = new URL(db.url);

  stack = await startStack({
    databaseUrl: db.url,
    natsUrl: nats.url,
    namespace,
    egressAllow: [`127.0.0.1:${sourcePort}`, `${pg.hostname}:${pg.port || 5432}`],
  });
  supervisor = superviseStack(stack);
  clients = chaosClients(stack);
  observer = observerDb(db.url);
  const tally = createStreamTally(nats.url, namespace);
  log(`stack up in ${seconds(Date.now() - suiteStartedAt)}: ${Object.values(stack.services).map((s) => `${s.name} ${s.address}`).join(', ')}`);

  const registered = await callRetrying<configV1.RegisterConnectorDefinitionResponse>(
    clients.config,
    'registerConnectorDefinition',
    { name: 'chaos', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(chaosSpec) },
    clients.operator,
  );
  if (registered.last.status !== grpc.status.OK) throw new Error(`RegisterConnectorDefinition ${grpc.status[registered.last.status]}: ${registered.last.message}`);

  const ctx: ChaosContext = {
    settings,
    stack,
    supervisor,
    clients,
    nats,
    namespace,
    tally,
    db: observer,
    adminDatabaseUrl: adminDatabaseUrl(),
    databaseName: db.name,
    databaseUrl: db.url,
    source: { url: `http://127.0.0.1:${sourcePort}`, hits },
    random,
    definitionId: registered.last.res!.definition!.definitionId,
    log,
  };

  const results: ScenarioResult[] = [];
  for (const scenario of [killScenario, natsScenario, postgresScenario, concurrencyScenario, redeliveryScenario]) {
    const r = await scenario(ctx);
    results.push(r);
    log(`done: ${r.title}: ${r.ledger.tried} tried, ${r.ledger.acked} acknowledged, in ${seconds(r.endedAt - r.startedAt)}`);
  }

  const workspaces = results.flatMap((r) => r.ledger.workspaceIds);
  const faultsEndedAt = Date.now();
  // The measurements after the wait take a minute or two; the wait gives way to keep the run in its budget.
  const convergeMs = Math.max(10_000, Math.min(settings.CHAOS_CONVERGE_S * 1000, suiteStartedAt + settings.CHAOS_BUDGET_S * 1000 - 120_000 - faultsEndedAt));
  log(`waiting up to ${seconds(convergeMs)} for the recovery loops (no backlog, no queued shredding, no orphan)`);
  let convergedAt: number | undefined;
  let lastState = '';
  while (Date.now() < faultsEndedAt + convergeMs) {
    const serving = await supervisor.serving(2_000);
    let missing = -1;
    if (await tally.catchUp()) {
      missing = 0;
      for (const t of tallied) missing += compareWithStream(await outboxIds(observer, t.schema), tally.counts(t.service)).missing;
    }
    const queued = await shreddingQueued(observer);
    const orphans = (await orphansIn(observer, workspaces)).length;
    lastState = `serving ${serving}, ${missing} events not on NATS, ${queued} queued for shredding, ${orphans} orphan versions`;
    if (serving && missing === 0 && queued === 0 && orphans === 0) {
      convergedAt = Date.now();
      break;
    }
    await new Promise((r) => setTimeout(r, 2_000));
  }
  log(convergedAt === undefined ? `not converged: ${lastState}` : `converged in ${seconds(convergedAt - faultsEndedAt)}`);

  const events = await actorEvents(observer);
  const rows: ReportRow[] = [];
  const details: string[] = [];
  for (const r of results) {
    const orphans = await orphansIn(observer, r.ledger.workspaceIds);
    const back = await readBack(clients, observer, r.ledger, events);
    const stuck = await probeStuck(clients, observer, r.ledger.workspaceIds, r.probeConfig);
    const exits = supervisor.exits.filter((e) => e.at >= r.startedAt && e.at < r.endedAt).length;
    rows.push({
      scenario: r.title,
      tried: r.ledger.tried,
      acknowledged: r.ledger.acked,
      lost: back.lost + (r.lost ?? 0),
      duplicates: back.duplicates + r.duplicates,
      missingOnNats: 0,
      doubledOnNats: 0,
      orphans: orphans.length,
      stuck: stuck.stuck,
      exits,
      recovery: r.recoveryText ?? worst(r.recoveryMs),
    });
    const refused = [...r.ledger.refused].map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
    const orphanReasons = new Map<string, number>();
    for (const o of orphans) orphanReasons.set(o.reason, (orphanReasons.get(o.reason) ?? 0) + 1);
    details.push(
      `- **${r.title}**: refused ${refused}; outcome unknown after retries ${r.ledger.unknown}; ` +
        `${r.ledger.acks.length} acknowledged writes looked up in the event log, ${back.checked} actors read back and hydrated; ${stuck.probed} actors probed${stuck.stuck ? ` (stuck: ${[...stuck.statuses].map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}` +
        `${orphans.length ? `; orphans: ${[...orphanReasons].map(([k, v]) => `${k} ${v}`).join(', ')}` : ''}` +
        `${back.reasons.size ? `; lost: ${[...back.reasons].map(([k, v]) => `${k} ${v}`).join(', ')}` : ''}` +
        `${r.notes.length ? `; ${r.notes.join('; ')}` : ''}`,
    );
  }

  // The probes above wrote too: give the relay a moment to publish them before the final count.
  const settleUntil = Date.now() + 60_000;
  for (;;) {
    const read = await tally.catchUp();
    let missing = 0;
    if (read) for (const t of tallied) missing += compareWithStream(await outboxIds(observer, t.schema), tally.counts(t.service)).missing;
    if ((read && missing === 0) || Date.now() > settleUntil) break;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  for (const [i, r] of results.entries()) {
    for (const t of tallied) {
      const c = compareWithStream(await outboxIds(observer, t.schema, new Date(r.startedAt), new Date(r.endedAt)), tally.counts(t.service));
      rows[i]!.missingOnNats += c.missing;
      rows[i]!.doubledOnNats += c.doubled;
    }
  }
  const all = { missing: 0, doubled: 0, events: 0 };
  for (const t of tallied) {
    const ids = await outboxIds(observer, t.schema);
    const c = compareWithStream(ids, tally.counts(t.service));
    all.missing += c.missing;
    all.doubled += c.doubled;
    all.events += ids.length;
  }
  const total = totalRow(rows, convergedAt === undefined ? `not converged in ${seconds(convergeMs)}` : `converged ${seconds(convergedAt - faultsEndedAt)}`, {
    missingOnNats: all.missing,
    doubledOnNats: all.doubled,
    exits: supervisor.exits.length,
  });
  const table = renderTable([...rows, total]);
  const took = Date.now() - suiteStartedAt;
  const exitLines = supervisor.exits.map((e) => `  - ${new Date(e.at).toISOString()} ${e.service} exited (${e.signal ?? `code ${e.code}`}); last output: ${e.lastMessages.join(' | ') || '–'}`);
  const report = [
    table,
    '',
    `Run of ${new Date(suiteStartedAt).toISOString()}, ${seconds(took)} in all; seed ${settings.CHAOS_SEED}; ${all.events} outbox events compared with NATS, ${tally.deadLetters()} dead-lettered copies; services down at the end: ${down(stack).join(', ') || 'none'}.`,
    ...details,
    ...(exitLines.length ? ['- unexpected exits:', ...exitLines] : []),
    '',
  ].join('\n');
  const reportPath = isAbsolute(settings.CHAOS_REPORT) ? settings.CHAOS_REPORT : join(repoRoot, settings.CHAOS_REPORT);
  await writeFile(reportPath, report);
  process.stdout.write(`\n${report}\n`);
  log(`report written to ${reportPath}`);
  expect(failuresOf(total), 'every failing column of the chaos table must be zero').toEqual([]);
});
