import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import type { configV1, secretsV1 } from '@coffer/contracts';
import { callRetrying, type ChaosClients } from './clients';
import { duplicateWrites, findOrphans, lostWrite, type LiveActor, type Observed, type Orphan } from './measure';
import type { Ledger } from './workload';

/** The application name of the suite's own connections, which the connection-termination scenario spares. */
export const OBSERVER_APPLICATION = 'coffer-chaos-observer';

/** Read access to the stack's database from outside the services (each service's schema is read, never written). */
export interface ObserverDb {
  query<T extends pg.QueryResultRow>(text: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** A small pool on the stack's database that retries a query whose connection was lost. */
export function observerDb(url: string): ObserverDb {
  const pool = new pg.Pool({ connectionString: url, max: 4, application_name: OBSERVER_APPLICATION });
  // An idle connection that breaks emits 'error' on the pool; the next query reconnects.
  pool.on('error', () => undefined);
  return {
    async query<T extends pg.QueryResultRow>(text: string, params: unknown[] = []) {
      for (let attempt = 1; ; attempt++) {
        try {
          return (await pool.query<T>(text, params)).rows;
        } catch (err) {
          const code = (err as { code?: string }).code;
          // Connection-level failures only (no SQLSTATE, or class 08 / admin shutdown); a wrong query throws at once.
          const transient = code === undefined || code.startsWith('08') || code === '57P01';
          if (!transient || attempt >= 5) throw err;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
    },
    close: () => pool.end(),
  };
}

/** Terminates every connection to `database` except the suite's own; returns how many it ended. */
export async function terminateConnections(adminUrl: string, database: string): Promise<number> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      `select count(*) filter (where pg_terminate_backend(pid))::int as n from pg_stat_activity
        where datname = $1 and pid <> pg_backend_pid() and coalesce(application_name, '') <> $2`,
      [database, OBSERVER_APPLICATION],
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

/** Active versions nothing legitimately holds in `workspaceIds` (see `findOrphans`). */
export async function orphansIn(db: ObserverDb, workspaceIds: readonly string[]): Promise<Orphan[]> {
  const active = await db.query<{ coordinate: string; base_coordinate: string }>(
    `select coordinate, base_coordinate from secrets.secret_versions where state = 'active' and workspace_id = any($1::text[])`,
    [workspaceIds],
  );
  const actors = await db.query<{ actor_id: string; partial_config: unknown }>(
    `select actor_id::text, partial_config from config.actors where not deleted and workspace_id::text = any($1::text[])`,
    [workspaceIds],
  );
  const events = await db.query<{ stream_id: string; p: unknown }>(
    `select stream_id, data->'partialConfig' as p from config.events where stream_id = any($1::text[]) and type in ('ActorCreated', 'ActorConfigUpdated')`,
    [actors.map((a) => `actor-${a.actor_id}`)],
  );
  const history = new Map<string, unknown[]>();
  for (const e of events) history.set(e.stream_id, [...(history.get(e.stream_id) ?? []), e.p]);
  const live: LiveActor[] = actors.map((a) => ({ actorId: a.actor_id, partialConfig: a.partial_config, history: history.get(`actor-${a.actor_id}`) ?? [] }));
  return findOrphans(
    active.map((v) => ({ coordinate: v.coordinate, baseCoordinate: v.base_coordinate })),
    live,
  );
}

/** Coordinates queued for shredding at config and not yet confirmed. */
export async function shreddingQueued(db: ObserverDb): Promise<number> {
  return (await db.query<{ n: number }>('select count(*)::int as n from config.secret_shredding'))[0]!.n;
}

/** The event ids of `schema`'s outbox, optionally only those written in [from, to). */
export async function outboxIds(db: ObserverDb, schema: string, from?: Date, to?: Date): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `select event_id::text as id from ${pg.escapeIdentifier(schema)}.outbox where ($1::timestamptz is null or created_at >= $1) and ($2::timestamptz is null or created_at < $2)`,
    [from ?? null, to ?? null],
  );
  return rows.map((r) => r.id);
}

/** One config event of an actor stream, with the workspace of its actor. */
export interface ActorEvent {
  actorId: string;
  workspaceId: string;
  type: string;
  name: string | null;
}

/** Every event of every actor stream at config, each with its actor's workspace (from its ActorCreated). */
export async function actorEvents(db: ObserverDb): Promise<ActorEvent[]> {
  const rows = await db.query<{ stream_id: string; type: string; name: string | null; ws: string | null }>(
    `select stream_id, type, data->>'name' as name, data->>'workspaceId' as ws from config.events where stream_id like 'actor-%' order by global_position`,
  );
  const workspaceOf = new Map<string, string>();
  for (const r of rows) if (r.type === 'ActorCreated' && r.ws) workspaceOf.set(r.stream_id, r.ws);
  return rows.map((r) => ({ actorId: r.stream_id.slice('actor-'.length), workspaceId: workspaceOf.get(r.stream_id) ?? '', type: r.type, name: r.name }));
}

/** Runs `fn` over `items`, `concurrency` at a time. */
export async function eachLimited<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Reads an actor back from outside: config's answer, then its stored partial config hydrated at secrets. */
export async function observeActor(clients: ChaosClients, db: ObserverDb, workspaceId: string, actorId: string): Promise<Observed> {
  const got = await callRetrying<configV1.GetActorResponse>(clients.config, 'getActor', { actorId }, clients.operator);
  if (got.last.status === grpc.status.NOT_FOUND) return { found: false };
  if (got.last.status !== grpc.status.OK) return { found: true, name: '', version: -1, hydrateError: `GetActor ${grpc.status[got.last.status]}` };
  const actor = got.last.res!.actor!;
  const [row] = await db.query<{ partial_config: unknown }>('select partial_config from config.actors where actor_id = $1', [actorId]);
  if (!row) return { found: true, name: actor.name, version: actor.version, hydrateError: 'no row in config.actors' };
  const hydrated = await callRetrying<secretsV1.HydrateConfigResponse>(
    clients.secrets,
    'hydrateConfig',
    { workspaceId, partialConfigJson: JSON.stringify(row.partial_config), reason: 'chaos suite: read back', ownerId: actorId },
    clients.hydrator,
  );
  if (hydrated.last.status !== grpc.status.OK) return { found: true, name: actor.name, version: actor.version, hydrateError: grpc.status[hydrated.last.status] };
  const config = JSON.parse(hydrated.last.res!.configJson) as { api_token?: string; credentials?: { client_secret?: string } };
  return { found: true, name: actor.name, version: actor.version, values: { apiToken: config.api_token ?? '', clientSecret: config.credentials?.client_secret ?? '' } };
}

/** What the read-back found for one scenario. */
export interface LossReport {
  /** Acknowledged writes that cannot be read back. */
  lost: number;
  /** Writes applied more than once (by their tags in config's event log). */
  duplicates: number;
  /** Actors whose last acknowledged write was read back. */
  checked: number;
  /** A few reasons, for the report. */
  reasons: Map<string, number>;
}

/**
 * Checks every acknowledged write of `ledger`: it is in config's event log, and the last one of each
 * actor is what config answers and what secrets hydrates. Also counts writes whose tag is on more
 * than one event (a retried create that made a second actor, an update applied twice).
 */
export async function readBack(clients: ChaosClients, db: ObserverDb, ledger: Ledger, events: readonly ActorEvent[]): Promise<LossReport> {
  const reasons = new Map<string, number>();
  const lostTags = new Set<string>();
  const note = (tag: string, reason: string) => {
    lostTags.add(tag);
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  };
  const byActor = new Map<string, ActorEvent[]>();
  for (const e of events) byActor.set(e.actorId, [...(byActor.get(e.actorId) ?? []), e]);
  for (const ack of ledger.acks) {
    const log = byActor.get(ack.actorId) ?? [];
    const present = ack.kind === 'delete' ? log.some((e) => e.type === 'ActorDeleted') : log.some((e) => e.name === ack.tag && e.type !== 'ActorDeleted');
    if (!present) note(ack.tag, 'acknowledged but not in the event log');
  }
  let checked = 0;
  await eachLimited([...ledger.actors.values()], 8, async (track) => {
    if (!track.lastAcked) return;
    checked++;
    let observed = await observeActor(clients, db, track.workspaceId, track.actorId);
    // A read that did not get through (a busy lane, a restart) is tried again before it counts.
    for (let i = 0; i < 3 && observed.found && observed.version < 0; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      observed = await observeActor(clients, db, track.workspaceId, track.actorId);
    }
    const why = lostWrite(track, observed, ledger.values);
    if (why) note(track.lastAcked.tag, why);
  });
  const mine = new Set(ledger.workspaceIds);
  const names = events.filter((e) => mine.has(e.workspaceId) && e.type !== 'ActorDeleted' && e.name).map((e) => e.name!);
  return { lost: lostTags.size, duplicates: duplicateWrites(names), checked, reasons };
}

/** The outcome of trying one update with new secret values on every live actor of some workspaces. */
export interface StuckReport {
  probed: number;
  stuck: number;
  /** Status of the last failed attempt → actors. */
  statuses: Map<string, number>;
}

/**
 * Tries, on every live actor of the workspaces, an update with new secret values (`configFor`) at the
 * version it reads (three tries, each retried through transient failures): an actor that refuses them all is stuck.
 */
export async function probeStuck(
  clients: ChaosClients,
  db: ObserverDb,
  workspaceIds: readonly string[],
  configFor: (actorId: string, tag: string) => string = (_actorId, tag) =>
    JSON.stringify({ url: 'https://chaos.example.test/api', label: tag, api_token: `${tag}-api`, credentials: { client_id: 'chaos', client_secret: `${tag}-client` } }),
): Promise<StuckReport> {
  const actors = await db.query<{ actor_id: string }>('select actor_id::text from config.actors where not deleted and workspace_id::text = any($1::text[])', [workspaceIds]);
  const statuses = new Map<string, number>();
  let stuck = 0;
  await eachLimited(actors, 8, async ({ actor_id: actorId }) => {
    let last = 'none';
    for (let attempt = 0; attempt < 3; attempt++) {
      const got = await callRetrying<configV1.GetActorResponse>(clients.config, 'getActor', { actorId }, clients.operator);
      if (got.last.status !== grpc.status.OK) {
        last = `GetActor ${grpc.status[got.last.status]}`;
        continue;
      }
      const tag = `probe-${actorId.slice(0, 8)}-${attempt}-${Math.random().toString(36).slice(2, 8)}`;
      const r = await callRetrying(clients.config, 'updateActor', { actorId, expectedVersion: got.last.res!.actor!.version, name: tag, configJson: configFor(actorId, tag) }, clients.operator);
      if (r.last.status === grpc.status.OK) return;
      last = `UpdateActor ${grpc.status[r.last.status]}`;
    }
    stuck++;
    statuses.set(last, (statuses.get(last) ?? 0) + 1);
  });
  return { probed: actors.length, stuck, statuses };
}
