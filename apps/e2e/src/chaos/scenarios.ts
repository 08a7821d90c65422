import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { configV1, streamName, type MessagingNamespace, type secretsV1 } from '@coffer/contracts';
import { stackServices, type Stack, type StackService } from '@coffer/cli';
import { terminateConnections, outboxIds, type ObserverDb } from './checks';
import { callRetrying, type ChaosClients } from './clients';
import { compareWithStream, seconds } from './measure';
import type { NatsServerProcess } from './nats-server';
import type { ChaosSettings } from './settings';
import { tallied, type StreamTally } from './stream-tally';
import type { Supervisor } from './supervisor';
import { createActor, firstAckAfter, newLedger, refresh, runWriters, updateRequest, type Ledger } from './workload';

/** What every scenario works with. */
export interface ChaosContext {
  settings: ChaosSettings;
  stack: Stack;
  supervisor: Supervisor;
  clients: ChaosClients;
  nats: NatsServerProcess;
  namespace: MessagingNamespace;
  tally: StreamTally;
  db: ObserverDb;
  adminDatabaseUrl: string;
  databaseName: string;
  databaseUrl: string;
  /** The loopback HTTP source the sync scenario reads. */
  source: { url: string; hits: Map<string, number> };
  random: () => number;
  /** The chaos connector definition (see `chaosSpec`). */
  definitionId: string;
  log(line: string): void;
}

/** What a scenario did, for the table and the report. */
export interface ScenarioResult {
  title: string;
  ledger: Ledger;
  startedAt: number;
  endedAt: number;
  /** Time from each fault to the stack serving again (or to the backlog drained). */
  recoveryMs: number[];
  /** How the recovery cell reads when it is not the worst of `recoveryMs`. */
  recoveryText?: string;
  /** Duplicate effects found by the scenario itself (two OKs for one expected version, re-run syncs). */
  duplicates: number;
  /** Acknowledged operations the scenario itself found without effect (e.g. a requested sync that never became a job). */
  lost?: number;
  /** A config for the stuck-actor probe of an actor of this scenario, when not the chaos spec's. */
  probeConfig?: (actorId: string, tag: string) => string;
  notes: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Creates `count` workspaces for one scenario: each scenario's actors live apart, so each row counts
 * its own; and each writer gets one of its own, as tenants do (config and secrets bound the secret
 * writes in flight per workspace, so one workspace would serialize every writer).
 */
async function workspaces(ctx: ChaosContext, name: string, count = 1): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await callRetrying<configV1.CreateWorkspaceResponse>(ctx.clients.config, 'createWorkspace', { name: `${name} ${i + 1}`, organizationId: '' }, ctx.clients.operator);
    if (r.last.status !== grpc.status.OK) throw new Error(`CreateWorkspace ${grpc.status[r.last.status]}: ${r.last.message}`);
    ids.push(r.last.res!.workspace!.workspaceId);
  }
  return ids;
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** The worst of the recovery times, e.g. `6.1 s (max of 24)`. */
export function worst(ms: readonly number[]): string {
  if (ms.length === 0) return '–';
  return `${seconds(Math.max(...ms))} (max of ${ms.length})`;
}

/**
 * How far a phase bounded by both a count of writes and a time has come, from 0 to 1: faults are
 * placed on this scale, so they spread over the phase whichever bound ends it.
 */
function progressOf(ledger: Ledger, total: number, startedAt: number, maxMs: number): () => number {
  return () => Math.max(ledger.tried / total, (Date.now() - startedAt) / maxMs);
}

/**
 * Recovery from one fault at `at`: until `services` answer SERVING and then a write is acknowledged
 * (or, once the writers have finished, until they serve).
 */
async function recovery(ctx: ChaosContext, ledger: Ledger, at: number, writing: () => boolean, services?: readonly StackService[]): Promise<number> {
  const back = await ctx.supervisor.serving(120_000, services);
  const servedAt = Date.now();
  if (!back) return servedAt - at;
  const ack = await firstAckAfter(ledger, Math.max(at, servedAt - 1), 60_000, writing);
  return (ack ?? (writing() ? Date.now() : servedAt)) - at;
}

/**
 * SIGKILL of a random service at random moments during CHAOS_WRITES writes by CHAOS_CLIENTS clients
 * (creates, updates with new secret values, masked renames, deletes), each client in a workspace of
 * its own; each killed service is started again after a random pause of up to a second. The writes
 * stop early at CHAOS_KILL_PHASE_MAX_S. Recovery: from the kill until that service answers SERVING
 * and a write is acknowledged after it.
 */
export async function killScenario(ctx: ChaosContext): Promise<ScenarioResult> {
  const { settings, random } = ctx;
  const startedAt = Date.now();
  const ledger = newLedger('kill', await workspaces(ctx, 'chaos: SIGKILL', settings.CHAOS_CLIENTS), ctx.definitionId);
  const total = settings.CHAOS_WRITES;
  const maxMs = settings.CHAOS_KILL_PHASE_MAX_S * 1000;
  const progress = progressOf(ledger, total, startedAt, maxMs);
  const points = Array.from({ length: settings.CHAOS_KILLS }, () => 0.03 + 0.92 * random()).sort((a, b) => a - b);
  let writing = true;
  const writers = runWriters({ clients: ctx.clients, ledger, writers: settings.CHAOS_CLIENTS, total, random, stop: () => Date.now() - startedAt > maxMs }).finally(() => {
    writing = false;
  });
  const recoveryMs: number[] = [];
  const notes: string[] = [];
  const report = setInterval(() => ctx.log(`kill: ${ledger.tried}/${total} writes, ${ledger.acked} acknowledged, ${recoveryMs.length} kills`), 15_000);
  try {
    for (const point of points) {
      await waitUntil(() => progress() >= point || !writing, maxMs);
      if (!writing) break;
      const victim = stackServices[Math.floor(random() * stackServices.length)]!;
      await sleep(random() * 300);
      const killedAt = Date.now();
      await ctx.supervisor.kill(victim);
      await sleep(random() * 1000);
      await ctx.supervisor.restart(victim).catch(() => undefined);
      recoveryMs.push(await recovery(ctx, ledger, killedAt, () => writing, [victim]));
      ctx.log(`kill ${recoveryMs.length}/${points.length}: ${victim} at write ${ledger.tried}; serving and writing again after ${seconds(recoveryMs.at(-1)!)}`);
    }
  } finally {
    clearInterval(report);
  }
  await writers;
  if (ledger.tried < total) notes.push(`stopped after ${ledger.tried} of ${total} writes (CHAOS_KILL_PHASE_MAX_S)`);
  notes.push(`kills: ${stackServices.map((s) => `${s} ${ctx.supervisor.kills[s]}`).join(', ')}`);
  return { title: `SIGKILL ×${recoveryMs.length} during ${ledger.tried} writes`, ledger, startedAt, endedAt: Date.now(), recoveryMs, duplicates: 0, notes };
}

/** Waits until every outbox event written before `before` is on its stream; resolves the time it happened, or undefined. */
async function drained(ctx: ChaosContext, before: Date, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ctx.tally.catchUp()) {
      let missing = 0;
      for (const t of tallied) missing += compareWithStream(await outboxIds(ctx.db, t.schema, undefined, before), ctx.tally.counts(t.service)).missing;
      if (missing === 0) return Date.now();
    }
    await sleep(500);
  }
  return undefined;
}

/**
 * NATS stopped (SIGTERM to its PID) for CHAOS_NATS_OUTAGE_S while clients write at a steady
 * CHAOS_NATS_WRITE_RATE, then started again on the same port and store. Recovery: from the restart
 * until every event written during the outage is on its stream.
 */
export async function natsScenario(ctx: ChaosContext): Promise<ScenarioResult> {
  const { settings } = ctx;
  const startedAt = Date.now();
  const ledger = newLedger('nats', await workspaces(ctx, 'chaos: NATS outage', settings.CHAOS_CLIENTS), ctx.definitionId);
  const outageMs = settings.CHAOS_NATS_OUTAGE_S * 1000;
  const before = 5_000;
  const after = 10_000;
  const total = Math.ceil((settings.CHAOS_NATS_WRITE_RATE * (before + outageMs + after)) / 1000);
  const writers = runWriters({ clients: ctx.clients, ledger, writers: settings.CHAOS_CLIENTS, total, random: ctx.random, ratePerSecond: settings.CHAOS_NATS_WRITE_RATE });
  await sleep(before);
  const pid = ctx.nats.pid();
  await ctx.nats.stop();
  ctx.log(`nats: stopped (pid ${pid}) at write ${ledger.tried}; ${settings.CHAOS_NATS_OUTAGE_S} s outage`);
  await sleep(outageMs);
  const during = ledger.acked;
  await ctx.nats.start();
  const restartedAt = Date.now();
  ctx.log(`nats: started again (pid ${ctx.nats.pid()}) at write ${ledger.tried}, ${during} acknowledged so far`);
  const drainedAt = await drained(ctx, new Date(restartedAt), settings.CHAOS_CONVERGE_S * 1000);
  await writers;
  const notes = [`${ledger.tried} writes at ${settings.CHAOS_NATS_WRITE_RATE}/s over ${seconds(Date.now() - startedAt)}`];
  if (drainedAt === undefined) notes.push(`the outage's backlog was not on NATS within ${settings.CHAOS_CONVERGE_S} s of the restart`);
  return {
    title: `NATS stopped ${settings.CHAOS_NATS_OUTAGE_S} s during writes`,
    ledger,
    startedAt,
    endedAt: Date.now(),
    recoveryMs: drainedAt === undefined ? [] : [drainedAt - restartedAt],
    recoveryText: drainedAt === undefined ? `backlog not drained in ${settings.CHAOS_CONVERGE_S} s` : `backlog drained ${seconds(drainedAt - restartedAt)}`,
    duplicates: 0,
    notes,
  };
}

/**
 * Every connection of the stack's database terminated (pg_terminate_backend) CHAOS_PG_TERMINATIONS
 * times, evenly spread over CHAOS_PG_WRITES writes (or CHAOS_PG_PHASE_MAX_S, whichever ends first).
 * Recovery: from the termination until every service answers SERVING (restarted by the supervisor
 * if it died) and a write is acknowledged.
 */
export async function postgresScenario(ctx: ChaosContext): Promise<ScenarioResult> {
  const { settings } = ctx;
  const startedAt = Date.now();
  const ledger = newLedger('pg', await workspaces(ctx, 'chaos: Postgres connections', settings.CHAOS_CLIENTS), ctx.definitionId);
  const total = settings.CHAOS_PG_WRITES;
  const maxMs = settings.CHAOS_PG_PHASE_MAX_S * 1000;
  const progress = progressOf(ledger, total, startedAt, maxMs);
  const n = settings.CHAOS_PG_TERMINATIONS;
  let writing = true;
  const writers = runWriters({ clients: ctx.clients, ledger, writers: settings.CHAOS_CLIENTS, total, random: ctx.random, stop: () => Date.now() - startedAt > maxMs }).finally(() => {
    writing = false;
  });
  const recoveryMs: number[] = [];
  const notes: string[] = [];
  for (let i = 1; i <= n; i++) {
    await waitUntil(() => progress() >= i / (n + 1) || !writing, maxMs);
    if (!writing) break;
    const at = Date.now();
    const ended = await terminateConnections(ctx.adminDatabaseUrl, ctx.databaseName);
    // Give a service that dies of it the moment to do so before asking who serves.
    await sleep(1_000);
    recoveryMs.push(await recovery(ctx, ledger, at, () => writing));
    notes.push(`termination ${i}: ${ended} connections`);
    ctx.log(`postgres: terminated ${ended} connections at write ${ledger.tried}; serving and writing again after ${seconds(recoveryMs.at(-1)!)}`);
  }
  await writers;
  if (ledger.tried < total) notes.push(`stopped after ${ledger.tried} of ${total} writes (CHAOS_PG_PHASE_MAX_S)`);
  return { title: `Postgres connections terminated ×${recoveryMs.length} during ${ledger.tried} writes`, ledger, startedAt, endedAt: Date.now(), recoveryMs, duplicates: 0, notes };
}

/**
 * CHAOS_CONCURRENT updates of one actor at the same expected version (half with a new secret value,
 * half masked renames: the rename-wins race), then as many writes of one secret base at secrets at
 * the same expected version, for CHAOS_CONCURRENT_ROUNDS rounds. More than one OK in a round is a
 * duplicate effect (a lost update). The base is destroyed at the end (it belongs to no actor).
 */
export async function concurrencyScenario(ctx: ChaosContext): Promise<ScenarioResult> {
  const { settings, clients } = ctx;
  const startedAt = Date.now();
  const ledger = newLedger('concurrent', await workspaces(ctx, 'chaos: concurrent updates'), ctx.definitionId);
  const notes: string[] = [];
  const n = settings.CHAOS_CONCURRENT;
  const track = await createActor(clients, ledger, 'concurrent-actor', ledger.workspaceIds[0]!);
  if (!track) throw new Error('could not create the actor of the concurrency scenario');
  let winners = 0;
  for (let round = 0; round < settings.CHAOS_CONCURRENT_ROUNDS; round++) {
    await refresh(clients, track);
    const current = ledger.values.get(track.name);
    const attempts = Array.from({ length: n }, (_, i) => {
      const tag = `concurrent-r${round}-${i}`;
      const { req, next, kind } = updateRequest(track, i % 2 === 0 ? 'rotate' : 'rename', tag, current);
      ledger.values.set(tag, next);
      return { tag, kind, p: callRetrying<configV1.UpdateActorResponse>(clients.config, 'updateActor', req, clients.operator) };
    });
    ledger.tried += n;
    const answers = await Promise.all(attempts.map(async (a) => ({ ...a, r: await a.p })));
    const oks = answers.filter((a) => a.r.last.status === grpc.status.OK);
    const unknown = answers.filter((a) => a.r.last.status !== grpc.status.OK && a.r.sawUnknown);
    for (const a of answers.filter((x) => x.r.last.status !== grpc.status.OK && !x.r.sawUnknown)) {
      const name = grpc.status[a.r.last.status]!;
      ledger.refused.set(name, (ledger.refused.get(name) ?? 0) + 1);
    }
    ledger.unknown += unknown.length;
    for (const ok of oks) {
      ledger.acked++;
      ledger.acks.push({ kind: ok.kind, tag: ok.tag, actorId: track.actorId });
      ledger.ackTimes.push(Date.now());
    }
    if (oks.length > 1) ledger.duplicates += oks.length - 1;
    if (oks.length > 0) {
      const top = oks.reduce((a, b) => (b.r.last.res!.actor!.version > a.r.last.res!.actor!.version ? b : a));
      track.lastAcked = { tag: top.tag, kind: top.kind, version: top.r.last.res!.actor!.version };
      track.acceptable = new Set([...oks.map((o) => o.tag), ...unknown.map((u) => u.tag)]);
      winners++;
    } else for (const u of unknown) track.acceptable.add(u.tag);
    track.dirty = true;
    const won = oks.map((o) => (o.kind === 'rename' ? 'rename' : 'new secret')).join(', ') || 'none';
    ctx.log(`concurrent: round ${round + 1}, ${oks.length} of ${n} updates acknowledged (${won})`);
    if (oks.length === 0) notes.push(`round ${round + 1}: no update of the actor succeeded`);
  }

  const owner = randomUUID();
  const write = (base: string, expectedVersion: number, tag: string) =>
    callRetrying<secretsV1.WriteSecretsResponse>(
      clients.secrets,
      'writeSecrets',
      { workspaceId: ledger.workspaceIds[0]!, ownerId: owner, secrets: [{ baseCoordinate: base, expectedVersion, value: `chaos-${tag}` }] },
      clients.configAtSecrets,
    );
  ledger.tried++;
  const first = await write('', 0, 'base-v1');
  if (first.last.status !== grpc.status.OK) throw new Error(`WriteSecrets of a new base: ${grpc.status[first.last.status]} ${first.last.message}`);
  ledger.acked++;
  const base = first.last.res!.secrets[0]!.baseCoordinate;
  let version = first.last.res!.secrets[0]!.version;
  for (let round = 0; round < settings.CHAOS_CONCURRENT_ROUNDS; round++) {
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => write(base, version, `base-r${round}-${i}`)));
    ledger.tried += n;
    const oks = answers.filter((a) => a.last.status === grpc.status.OK);
    ledger.acked += oks.length;
    for (const a of answers.filter((x) => x.last.status !== grpc.status.OK)) {
      if (a.sawUnknown) ledger.unknown++;
      else ledger.refused.set(grpc.status[a.last.status]!, (ledger.refused.get(grpc.status[a.last.status]!) ?? 0) + 1);
    }
    if (oks.length > 1) ledger.duplicates += oks.length - 1;
    version = Math.max(version, ...oks.map((o) => o.last.res!.secrets[0]!.version));
    ctx.log(`concurrent: base round ${round + 1}, ${oks.length} of ${n} writes acknowledged`);
  }
  const listed = await callRetrying<secretsV1.ListSecretVersionsResponse>(clients.secrets, 'listSecretVersions', { workspaceId: ledger.workspaceIds[0]!, baseCoordinate: base }, clients.configAtSecrets);
  const versions = listed.last.res?.versions.map((v) => v.version) ?? [];
  notes.push(`actor: ${winners} of ${settings.CHAOS_CONCURRENT_ROUNDS} rounds had a winner; base: versions ${versions.length ? `${Math.min(...versions)}–${Math.max(...versions)} (${versions.length})` : 'unlisted'}`);
  const destroyed = await callRetrying(clients.secrets, 'deleteSecrets', { workspaceId: ledger.workspaceIds[0]!, coordinates: [base], ownerId: owner }, clients.configAtSecrets);
  if (destroyed.last.status !== grpc.status.OK) notes.push(`the base could not be destroyed: ${grpc.status[destroyed.last.status]}`);
  return {
    title: `${n} concurrent updates of one actor and of one secret base ×${settings.CHAOS_CONCURRENT_ROUNDS}`,
    ledger,
    startedAt,
    endedAt: Date.now(),
    recoveryMs: [],
    recoveryText: '–',
    duplicates: ledger.duplicates,
    notes,
  };
}

const sourceSpec = { type: 'object', required: ['url', 'api_token'], properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } } };
const destinationSpec = {
  type: 'object',
  required: ['host', 'port', 'database', 'username', 'password', 'schema', 'table'],
  properties: {
    host: { type: 'string' },
    port: { type: 'integer' },
    database: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string', airbyte_secret: true },
    schema: { type: 'string' },
    table: { type: 'string' },
  },
};

/** Counts of every effect a consumed message has, read from outside. */
interface Effects {
  syncFetches: number;
  destinationRows: number;
  syncJobs: number;
  jobEvents: number;
  checkEvents: number;
}

async function effects(ctx: ChaosContext, connectionId: string): Promise<Effects> {
  const q = async (text: string, params: unknown[] = []) => (await ctx.db.query<{ n: number }>(text, params))[0]?.n ?? 0;
  return {
    syncFetches: ctx.source.hits.get('/sync') ?? 0,
    destinationRows: await q(`select count(*)::int as n from chaos_dest.records`).catch(() => 0),
    syncJobs: await q(`select count(*)::int as n from sync.sync_jobs where connection_id = $1`, [connectionId]),
    jobEvents: await q(`select count(*)::int as n from sync.events where stream_id like 'sync-job-%'`),
    checkEvents: await q(`select count(*)::int as n from sync.events where stream_id like 'check-%'`),
  };
}

/** Durable consumers of the namespace's streams, with what they still have to deliver. */
async function durables(ctx: ChaosContext): Promise<{ stream: string; name: string; pending: number; ackPending: number; delivered: number }[]> {
  const nc = await connect({ servers: ctx.nats.url, reconnect: false, timeout: 3_000 });
  try {
    const jsm = await jetstreamManager(nc);
    const out = [];
    for (const t of tallied) {
      const stream = streamName(ctx.namespace, t.service);
      for await (const ci of jsm.consumers.list(stream)) {
        if (ci.config.durable_name) out.push({ stream, name: ci.name, pending: ci.num_pending, ackPending: ci.num_ack_pending, delivered: ci.delivered.consumer_seq });
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

/**
 * Redelivery of every consumed message: CHAOS_SYNCS syncs and CHAOS_CHECKS checks run to the end;
 * then, with the services stopped, every durable consumer is deleted, so the restarted services
 * declare them again and are handed every message of their subjects once more. Any new effect (a
 * source fetched again, destination rows, job or check events) is a duplicate. Recovery: from the
 * restart until the consumers have nothing pending.
 */
export async function redeliveryScenario(ctx: ChaosContext): Promise<ScenarioResult> {
  const { settings, clients } = ctx;
  const startedAt = Date.now();
  const notes: string[] = [];
  const ledger = newLedger('redelivery', await workspaces(ctx, 'chaos: redelivery'), '');
  const register = async (name: string, actorType: configV1.ActorType, connector: string, spec: unknown) => {
    const r = await callRetrying<configV1.RegisterConnectorDefinitionResponse>(clients.config, 'registerConnectorDefinition', { name, actorType, connector, specJson: JSON.stringify(spec) }, clients.operator);
    if (r.last.status !== grpc.status.OK) throw new Error(`RegisterConnectorDefinition ${grpc.status[r.last.status]}: ${r.last.message}`);
    return r.last.res!.definition!.definitionId;
  };
  const create = async (definitionId: string, name: string, config: unknown) => {
    const r = await callRetrying<configV1.CreateActorResponse>(clients.config, 'createActor', { workspaceId: ledger.workspaceIds[0]!, definitionId, name, configJson: JSON.stringify(config) }, clients.operator);
    if (r.last.status !== grpc.status.OK) throw new Error(`CreateActor ${grpc.status[r.last.status]}: ${r.last.message}`);
    return r.last.res!.actor!.actorId;
  };
  const sourceDef = await register('chaos http source', configV1.ActorType.ACTOR_TYPE_SOURCE, 'builtin:http-json', sourceSpec);
  const destinationDef = await register('chaos postgres destination', configV1.ActorType.ACTOR_TYPE_DESTINATION, 'builtin:postgres', destinationSpec);
  const pgUrl = new URL(ctx.databaseUrl);
  const destinationConfig = (password: string) => ({
    host: pgUrl.hostname,
    port: Number(pgUrl.port || 5432),
    database: ctx.databaseName,
    username: decodeURIComponent(pgUrl.username || 'postgres'),
    password,
    schema: 'chaos_dest',
    table: 'records',
  });
  const sourceId = await create(sourceDef, 'source', { url: `${ctx.source.url}/sync`, api_token: 'chaos-source-token' });
  const destinationId = await create(destinationDef, 'destination', destinationConfig('chaos-destination-password'));
  const connection = await callRetrying<configV1.CreateConnectionResponse>(clients.config, 'createConnection', { workspaceId: ledger.workspaceIds[0]!, sourceId, destinationId, name: 'chaos' }, clients.operator);
  if (connection.last.status !== grpc.status.OK) throw new Error(`CreateConnection ${grpc.status[connection.last.status]}: ${connection.last.message}`);
  const connectionId = connection.last.res!.connection!.connectionId;

  const jobIds: string[] = [];
  for (let i = 0; i < settings.CHAOS_SYNCS; i++) {
    ledger.tried++;
    const r = await callRetrying<configV1.RequestSyncResponse>(clients.config, 'requestSync', { connectionId, requestId: `sync-${i}` }, clients.operator);
    if (r.last.status === grpc.status.OK) {
      ledger.acked++;
      jobIds.push(r.last.res!.jobId);
    } else if (r.sawUnknown) ledger.unknown++;
    else ledger.refused.set(grpc.status[r.last.status]!, (ledger.refused.get(grpc.status[r.last.status]!) ?? 0) + 1);
  }
  let checksPassed = 0;
  for (let i = 0; i < settings.CHAOS_CHECKS; i++) {
    ledger.tried++;
    const r = await callRetrying<configV1.CheckConfigResponse>(
      clients.config,
      'checkConfig',
      { workspaceId: ledger.workspaceIds[0]!, definitionId: sourceDef, configJson: JSON.stringify({ url: `${ctx.source.url}/check`, api_token: `chaos-check-${i}` }) },
      clients.operator,
      60_000,
    );
    if (r.last.status === grpc.status.OK) {
      ledger.acked++;
      if (r.last.res!.succeeded) checksPassed++;
    } else if (r.sawUnknown) ledger.unknown++;
    else ledger.refused.set(grpc.status[r.last.status]!, (ledger.refused.get(grpc.status[r.last.status]!) ?? 0) + 1);
  }
  // Every requested sync must have ended before its message is delivered again.
  const deadline = Date.now() + 180_000;
  let ended = 0;
  while (Date.now() < deadline) {
    ended = (await ctx.db.query<{ n: number }>(`select count(*)::int as n from sync.sync_jobs where connection_id = $1 and status <> 'running'`, [connectionId]))[0]!.n;
    const busy = (await durables(ctx).catch(() => [])).some((d) => d.pending > 0 || d.ackPending > 0);
    if (ended >= jobIds.length && !busy) break;
    await sleep(500);
  }
  const succeeded = (await ctx.db.query<{ n: number }>(`select count(*)::int as n from sync.sync_jobs where connection_id = $1 and status = 'succeeded'`, [connectionId]))[0]!.n;
  notes.push(`${jobIds.length} syncs requested, ${ended} ended (${succeeded} succeeded); ${checksPassed} of ${settings.CHAOS_CHECKS} checks passed`);
  const before = await effects(ctx, connectionId);
  const jobsFound = (await ctx.db.query<{ n: number }>(`select count(*)::int as n from sync.sync_jobs where job_id::text = any($1::text[])`, [jobIds]))[0]!.n;
  const lost = jobIds.length - jobsFound;
  // A job more than was requested: a request applied twice.
  let duplicates = Math.max(0, before.syncJobs - settings.CHAOS_SYNCS);

  // Any service may own a durable consumer: all four stop, every durable consumer goes, all four
  // start again and declare theirs anew, which hands them every message of their subjects again.
  await Promise.all(stackServices.map((s) => ctx.supervisor.stop(s)));
  const consumed = await durables(ctx);
  const nc = await connect({ servers: ctx.nats.url, reconnect: false, timeout: 3_000 });
  try {
    const jsm = await jetstreamManager(nc);
    for (const d of consumed) await jsm.consumers.delete(d.stream, d.name);
  } finally {
    await nc.close();
  }
  const restartedAt = Date.now();
  for (const s of stackServices) await ctx.supervisor.restart(s).catch(() => undefined);
  let drainedAt: number | undefined;
  let redelivered = 0;
  while (Date.now() < restartedAt + 120_000) {
    const now = await durables(ctx).catch(() => []);
    const back = consumed.every((c) => now.some((d) => d.stream === c.stream && d.name === c.name));
    if (back && now.every((d) => d.pending === 0 && d.ackPending === 0)) {
      drainedAt = Date.now();
      redelivered = now.reduce((sum, d) => sum + d.delivered, 0);
      break;
    }
    await sleep(250);
  }
  // Effects are committed before the ack; a moment more lets a slow one show.
  await sleep(2_000);
  const after = await effects(ctx, connectionId);
  const increase = (k: keyof Effects) => Math.max(0, after[k] - before[k]);
  const again = { fetches: increase('syncFetches'), rows: increase('destinationRows'), jobs: increase('syncJobs'), jobEvents: increase('jobEvents'), checkEvents: increase('checkEvents') };
  duplicates += again.fetches + again.rows + again.jobs + again.jobEvents + again.checkEvents;
  notes.push(
    `${consumed.length} durable consumers reset, ${redelivered} messages delivered again; new effects: ${again.fetches} source fetches, ${again.rows} destination rows, ${again.jobs} jobs, ${again.jobEvents} job events, ${again.checkEvents} check events`,
  );
  if (drainedAt === undefined) notes.push('the redelivered messages were not all acknowledged within 120 s');
  return {
    title: `redelivery of every consumed message (${settings.CHAOS_SYNCS} syncs, ${settings.CHAOS_CHECKS} checks)`,
    ledger,
    startedAt,
    endedAt: Date.now(),
    recoveryMs: drainedAt === undefined ? [] : [drainedAt - restartedAt],
    recoveryText: drainedAt === undefined ? 'not drained in 120 s' : `redelivered in ${seconds(drainedAt - restartedAt)}`,
    duplicates,
    lost,
    probeConfig: (actorId, tag) =>
      JSON.stringify(actorId === sourceId ? { url: `${ctx.source.url}/sync`, api_token: `${tag}-token` } : destinationConfig(`${tag}-password`)),
    notes,
  };
}

/** Every service that is not running right now (for the report). */
export function down(stack: Stack): StackService[] {
  return stackServices.filter((s) => stack.services[s].process.exitCode !== null || stack.services[s].process.signalCode !== null);
}
