import { sql, type Kysely, type QueryExecutorProvider, type Transaction } from 'kysely';
import type { ConfigDatabase } from './config.database';

type Db = Kysely<ConfigDatabase> | Transaction<ConfigDatabase>;

/** A pending (or ended) OAuth authorization code flow; no secret value: the state only as its hash, the rest as coordinates. */
export interface OAuthFlowRow {
  flow_id: string;
  state_hash: string;
  workspace_id: string;
  caller: string;
  actor_id: string;
  /** True when the flow authorizes an existing actor again. */
  reauthorize: boolean;
  definition_id: string;
  name: string;
  partial_config: Record<string, unknown>;
  verifier_coordinate: string;
  redirect_uri: string;
  created_at: Date;
  expires_at: Date;
  ended_at: Date | null;
  outcome: string | null;
}

/** Migration 0002: the table of OAuth authorization code flows (idempotent). */
export async function migrateOAuthFlows(db: QueryExecutorProvider, schema: string): Promise<void> {
  const s = sql.id(schema);
  await sql`create table if not exists ${s}.oauth_flows (
    flow_id uuid primary key,
    state_hash text not null unique,
    workspace_id uuid not null,
    caller text not null,
    actor_id uuid not null,
    definition_id uuid not null,
    name text not null,
    partial_config jsonb not null,
    verifier_coordinate text not null,
    redirect_uri text not null,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    ended_at timestamptz,
    outcome text,
    reauthorize boolean not null default false
  )`.execute(db);
}

/** Records a new flow. */
export async function insertOAuthFlow(db: Db, schema: string, row: Omit<OAuthFlowRow, 'ended_at' | 'outcome'>): Promise<void> {
  await db
    .withSchema(schema)
    .insertInto('oauth_flows')
    .values({ ...row, partial_config: JSON.stringify(row.partial_config) })
    .execute();
}

/** The flow whose state hashes to `stateHash`. */
export async function findOAuthFlow(db: Db, schema: string, stateHash: string): Promise<OAuthFlowRow | undefined> {
  return (await db.withSchema(schema).selectFrom('oauth_flows').selectAll().where('state_hash', '=', stateHash).executeTakeFirst()) as OAuthFlowRow | undefined;
}

/**
 * Ends a flow that is still pending and unexpired at `now`, with `outcome`: true for the one
 * caller that wins, so a state is used once even by concurrent callbacks.
 */
export async function claimOAuthFlow(db: Db, schema: string, flowId: string, now: Date, outcome: string): Promise<boolean> {
  const r = await db
    .withSchema(schema)
    .updateTable('oauth_flows')
    .set({ ended_at: now, outcome })
    .where('flow_id', '=', flowId)
    .where('ended_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Sets the outcome of an ended flow. */
export async function setOAuthFlowOutcome(db: Db, schema: string, flowId: string, outcome: string): Promise<void> {
  await db.withSchema(schema).updateTable('oauth_flows').set({ outcome }).where('flow_id', '=', flowId).execute();
}

/** Makes the held shredding of some of an actor's coordinates due now. */
export async function releaseShreddingNow(db: Db, schema: string, coordinates: string[], now: Date): Promise<void> {
  if (coordinates.length === 0) return;
  await db.withSchema(schema).updateTable('secret_shredding').set({ next_attempt_at: now }).where('coordinate', 'in', coordinates).execute();
}
