import { createHash, randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { CofferError, EPHEMERAL_WORKSPACE_ID, baseCoordinate, isCofferError, type IntegrationEventMessage, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import type { AppendedEvent, EventStore, NewEvent, OutboxMessage } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import { createKeyedLimiter } from '@coffer/rpc';
import { SecretJsonError, mask, ownSecretCoordinates, replaceSecretReference, secretCoordinates, secretReferences, split, type PlannedSecretWrite } from '@coffer/secret-json';
import type { Logger } from '@coffer/telemetry';
import * as actorDomain from './domain/actor.decider';
import * as connectionDomain from './domain/connection.decider';
import * as catalogDomain from './domain/workspace.decider';
import {
  findActor,
  findConnection,
  findDefinition,
  findWorkspace,
  findEndUserWorkspace,
  findOwner,
  type WorkspaceRow,
  projectActorCreated,
  projectActorDeleted,
  projectActorUpdated,
  projectConnectionCreated,
  projectDefinitionRegistered,
  projectWorkspaceCreated,
  completeShredding,
  claimDueShredding,
  listActors,
  listConnections,
  listDefinitions,
  listWorkspaces,
  patchRow,
  countActorsOfDefinition,
  workspaceActorIds,
  workspaceConnectionIds,
  isUuid,
  postponeShredding,
  queueShredding,
  recordCredentialRevocation,
  findCredentialRevocation,
  releaseCredentialRevocation,
  recordWriteIntent,
  claimWriteIntent,
  dropWriteIntent,
  abandonWriteIntents,
  type WriteOperation,
  type ActorRow,
} from './config.postgres';
import type { FaultPoint } from './fault-points';
import { atNextVersions } from './next-versions';
import type { CheckResults } from './check-results';
import { changedFields } from './changed-fields';
import { checkJsonKeys } from './request-bounds';
import { idempotentCreates } from './idempotent-creates';
import { compileSpec } from './spec-validation';
import { OAUTH_KEYWORD, checkOAuthDeclaration, oauthDeclarationJson } from './oauth-declaration';
import { PROXY_KEYWORD, checkProxyDeclaration, proxyDeclarationJson } from './proxy-declaration';
import { WEBHOOK_DEFINITION_ID, WEBHOOK_SPEC } from './webhook-spec';
import { claimOAuthFlow, findOAuthFlow, insertOAuthFlow, releaseShreddingNow, setOAuthFlowOutcome } from './oauth-flows.postgres';
import type { ConfigDatabase } from './config.database';

/** Connector actors (sources, destinations) and webhooks share storage but never each other's API. */
export type Kind = 'connector' | 'webhook';
const kindOf = (t: actorDomain.ActorType): Kind => (t === 'webhook' ? 'webhook' : 'connector');
/** The published name of an actor event: SourceCreated, DestinationConfigUpdated, WebhookConfigDeleted, ... */
function actorEvent(t: actorDomain.ActorType, what: 'Created' | 'ConfigUpdated' | 'Deleted'): IntegrationEventName {
  const prefix = t === 'source' ? 'Source' : t === 'destination' ? 'Destination' : 'WebhookConfig';
  return (what === 'ConfigUpdated' && prefix === 'WebhookConfig' ? 'WebhookConfigUpdated' : `${prefix}${what}`) as IntegrationEventName;
}
const typesOf = (kind: Kind, actorType?: actorDomain.ActorType): actorDomain.ActorType[] => (kind === 'webhook' ? ['webhook'] : actorType ? [actorType] : ['source', 'destination']);

/** Who asks, as recorded in event metadata. */
export interface Caller {
  subject: string;
  traceparent?: string;
}

/** Whom written secrets belong to: an actor, or one check/discover run of a workspace. */
export interface SecretsOwner {
  /** The actor id, or the check/discover job id. */
  ownerId: string;
  /** For check/discover secrets: the workspace that runs the check. */
  ownerWorkspaceId?: string;
  /** This write's id (its intent's), kept by secrets with each version it writes. */
  writeId?: string;
}

/** What config needs from the secrets service: write versions and destroy them, always for one owner. */
export interface SecretsPort {
  write(workspaceId: string, writes: { baseCoordinate: string; expectedVersion: number; value: string }[], owner: SecretsOwner): Promise<void>;
  /**
   * Destroys the owner's own coordinates; secrets leaves another owner's untouched. With `writeId`,
   * only the versions that write made (full coordinates).
   */
  delete(workspaceId: string, coordinates: string[], ownerId: string, writeId?: string): Promise<void>;
  /** Shreds every secret of a workspace. */
  deleteWorkspace(workspaceId: string): Promise<void>;
  /** The highest version secrets ever wrote of each base (absent or 0: never written). */
  latestVersions(workspaceId: string, baseCoordinates: string[]): Promise<Map<string, number>>;
  /** Metadata of every version of a base; never a value. */
  listVersions(workspaceId: string, baseCoordinate: string): Promise<{ version: number; state: string; createdAt: string }[]>;
  /** Writes the value of `toVersion` as the version after `expectedVersion`, for the owner (keeping its write id). */
  rollback(workspaceId: string, baseCoordinate: string, toVersion: number, expectedVersion: number, owner: SecretsOwner): Promise<void>;
}

/** The sync worker's ExchangeAuthorizationCode: tokens go to secrets there; only their coordinates come back. */
export type OAuthCodeExchangePort = (input: {
  workspaceId: string;
  actorId: string;
  oauthJson: string;
  partialConfigJson: string;
  code: string;
  redirectUri: string;
  accessTokenBase: string;
  refreshTokenBase: string;
  tokenExpiryDateBase: string;
  /** The version each base is at (0: new); the token is written as the next. */
  accessTokenExpectedVersion: number;
  refreshTokenExpectedVersion: number;
  tokenExpiryDateExpectedVersion: number;
  writeId: string;
}) => Promise<{ accessTokenCoordinate: string; refreshTokenCoordinate: string; tokenExpiryDateCoordinate: string }>;

/** One secret field of an actor: its base and the versions secrets holds of it (metadata only). */
export interface ActorSecretView {
  field: string;
  baseCoordinate: string;
  currentVersion: number;
  versions: { version: number; state: string; createdAt: string; current: boolean }[];
}

/** How a planned write reaches secrets: a plain write by default, a rollback for RollbackActorSecret. */
type SendSecrets = (owner: SecretsOwner) => Promise<void>;

/** A page request: `pageToken` is opaque, from the previous page. */
export interface PageInput {
  pageSize: number;
  pageToken: string;
}

/** A page of results. */
export interface PageOf<T> {
  items: T[];
  nextPageToken: string;
}

/** Shredding-queue entries of this form shred a whole workspace at secrets. */
const WORKSPACE_SWEEP = 'workspace:';

/** One proxied HTTP request as a caller sends it. */
export interface ProxyInput {
  actorId: string;
  workspaceId: string;
  method: string;
  path: string;
  headers: { name: string; value: string }[];
  body: Buffer;
}

/** The API's answer, redacted by the sync worker. */
export interface ProxyOutput {
  status: number;
  headers: { name: string; value: string }[];
  body: Buffer;
}

/** The sync worker's ProxyRequest. */
export interface ProxyPort {
  forward(request: ProxyInput & { partialConfigJson: string; proxyJson: string; oauthJson: string }): Promise<ProxyOutput>;
}

export interface ConfigServiceDeps {
  db: Kysely<ConfigDatabase>;
  store: EventStore<ConfigDatabase>;
  schema: string;
  namespace: MessagingNamespace;
  secrets: SecretsPort;
  coordinatePrefix: string;
  /** Largest accepted config_json / spec_json, in bytes. */
  maxConfigBytes: number;
  /** Most secret values one config may hold; default 100. */
  maxSecretsPerConfig?: number;
  /** Calls of one workspace that write secrets at once, and that may wait for a turn; default 2 and 8. */
  secretWritesPerWorkspace?: { concurrent: number; queued: number };
  /** Where check and discover answers arrive; absent, CheckConfig and DiscoverSchema are unavailable. */
  checkResults?: CheckResults;
  checkTimeoutMs?: number;
  /** How old a write intent without its event must be before recovery shreds its coordinates; default 60 s. */
  writeIntentGraceMs?: number;
  /**
   * How long the secrets of a deleted OAuth actor whose definition declares a revocation endpoint
   * are held for the sync worker to revoke the grant at the provider; shredded after it in any
   * case. Default 1 hour.
   */
  revocationHoldMs?: number;
  /** Where ProxyRequest goes (the sync worker); absent, ProxyRequest is unavailable. */
  proxy?: ProxyPort;
  /** The token request of an OAuth code flow, run by a sync worker; absent, no flow can complete. */
  oauthCodeExchange?: OAuthCodeExchangePort;
  /** The deployment's redirect URIs an OAuth code flow may use; empty, none can start. */
  oauthRedirectUris?: readonly string[];
  /** How long an OAuth flow's state is accepted; default 10 minutes. */
  oauthFlowTtlMs?: number;
  /** Tests only: called at each fault point of a cross-service write (main.ts kills the process there). */
  fault?: (point: FaultPoint) => void | Promise<void>;
  logger: Logger;
  clock: () => Date;
  newId: () => string;
}

export interface WorkspaceView {
  workspaceId: string;
  name: string;
  version: number;
  /** Empty when no organization owns it. */
  organizationId: string;
  externalUserId: string;
}

const wsView = (w: WorkspaceRow): WorkspaceView => ({
  workspaceId: w.workspace_id,
  name: w.name,
  version: w.version,
  organizationId: w.organization_id ?? '',
  externalUserId: w.external_user_id ?? '',
});

/** Who owns a resource: its workspace and that workspace's organization ('' when none). */
export interface Owner {
  workspaceId: string;
  organizationId: string;
}

export interface DefinitionView {
  definitionId: string;
  name: string;
  actorType: actorDomain.ActorType;
  connector: string;
  specJson: string;
  version: number;
}

export interface ActorView {
  actorId: string;
  workspaceId: string;
  definitionId: string;
  actorType: actorDomain.ActorType;
  name: string;
  /** Every secret masked. */
  configJson: string;
  version: number;
}

export interface ConnectionView {
  connectionId: string;
  workspaceId: string;
  sourceId: string;
  destinationId: string;
  name: string;
  version: number;
}

export interface SyncPlanView {
  connectionId: string;
  workspaceId: string;
  source: { actorId: string; connector: string; partialConfigJson: string; oauthJson: string };
  destination: { actorId: string; connector: string; partialConfigJson: string; oauthJson: string };
}

const SOURCE = 'coffer/config';
const CONNECTOR = /^[a-z][a-z0-9-]*:[A-Za-z0-9._/@:-]{1,200}$/;

function invalid(field: string, reason: string, message = `${field} ${reason}`): CofferError {
  return new CofferError('invalid_argument', message, [{ field, reason }]);
}

function requireName(name: string, field = 'name'): string {
  const trimmed = name.trim();
  if (!trimmed) throw invalid(field, 'is required');
  if (trimmed.length > 200) throw invalid(field, 'must be at most 200 characters');
  return trimmed;
}

function parseJsonObject(text: string, field: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The text may hold secrets: say where, never what.
    throw invalid(field, 'is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(field, 'must be a JSON object');
  checkJsonTree(value, field);
  checkJsonKeys(value, field);
  return value as Record<string, unknown>;
}

// Logs name a queue entry by a short hash: enough to correlate, never the coordinate itself.
const shortHash = (coordinate: string) => createHash('sha256').update(coordinate).digest('hex').slice(0, 12);

/** Deeper JSON is refused before anything walks it: the deepest real connector spec nests 21 levels. */
const MAX_JSON_DEPTH = 64;

/**
 * Refuses JSON nested deeper than {@link MAX_JSON_DEPTH} (a walk over it would exhaust the stack) and
 * a NUL character in any string or key (Postgres refuses it in jsonb). Iterative, so any depth is safe.
 */
function checkJsonTree(root: unknown, field: string): void {
  const stack: { node: unknown; depth: number }[] = [{ node: root, depth: 0 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (typeof node === 'string') {
      if (node.includes('\u0000')) throw invalid(field, 'holds a NUL character');
      continue;
    }
    if (node === null || typeof node !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) throw invalid(field, `is nested deeper than ${MAX_JSON_DEPTH} levels`);
    for (const [k, v] of Object.entries(node)) {
      if (k.includes('\u0000')) throw invalid(field, 'holds a NUL character');
      stack.push({ node: v, depth: depth + 1 });
    }
  }
}

const baseOf = (coordinate: string) => coordinate.slice(0, coordinate.lastIndexOf('_v'));
const versionOf = (coordinate: string) => Number(coordinate.slice(coordinate.lastIndexOf('_v') + 2));

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

function pageOf(page: PageInput | undefined): { after: string; limit: number } {
  const size = page?.pageSize ?? 0;
  if (!Number.isInteger(size) || size < 0 || size > 500) throw invalid('page.page_size', 'must be 1 to 500 (0 means 50)');
  if (!page?.pageToken) return { after: NIL_UUID, limit: size || 50 };
  const after = Buffer.from(page.pageToken, 'base64url').toString('utf8');
  if (!isUuid(after)) throw invalid('page.page_token', 'is not a token this service issued');
  return { after, limit: size || 50 };
}

function nextToken<T>(rows: T[], more: boolean, idOf: (row: T) => string): string {
  return more && rows.length > 0 ? Buffer.from(idOf(rows.at(-1)!), 'utf8').toString('base64url') : '';
}

/** The config service's use cases; secrets leave every config before it is stored. */
export function createConfigService(deps: ConfigServiceDeps) {
  const { db, store, schema, namespace: ns, secrets, logger, clock, newId, proxy } = deps;

  const metadata = (caller: Caller) => ({ actor: caller.subject, traceparent: caller.traceparent });
  const now = () => clock().toISOString();
  const maxSecretsPerConfig = deps.maxSecretsPerConfig ?? 100;
  // One workspace's large writes take turns, so that they cannot fill secrets and starve the others.
  const secretWriteTurns = createKeyedLimiter({ ...(deps.secretWritesPerWorkspace ?? { concurrent: 2, queued: 8 }), per: 'workspace' });

  function outbox<N extends IntegrationEventName>(
    name: N,
    subject: string,
    caller: Caller,
    message: (r: AppendedEvent) => IntegrationEventMessage<N>,
  ): (recorded: AppendedEvent[]) => OutboxMessage[] {
    return (recorded) =>
      recorded.map((r) =>
        integrationEventMessage(ns, name, message(r), { eventId: r.eventId, source: SOURCE, subject, time: r.recordedAt, traceparent: caller.traceparent }),
      );
  }

  const asNew = (events: { type: string; data: object }[], caller: Caller): NewEvent[] =>
    events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: metadata(caller) }));

  async function loadActor(actorId: string) {
    const { currentVersion, events } = await store.readStream(`actor-${actorId}`);
    const state = events.reduce((s, e) => actorDomain.evolve(s, { type: e.type, data: e.data } as unknown as actorDomain.ActorEvent), actorDomain.initialState());
    return { state, version: currentVersion };
  }

  async function loadConnection(connectionId: string) {
    const { currentVersion, events } = await store.readStream(`connection-${connectionId}`);
    const state = events.reduce(
      (s, e) => connectionDomain.evolve(s, { type: e.type, data: e.data } as unknown as connectionDomain.ConnectionEvent),
      connectionDomain.initialState(),
    );
    return { state, version: currentVersion, events };
  }

  async function requireDefinition(definitionId: string, field = 'definition_id') {
    const def = await findDefinition(db, schema, definitionId);
    if (!def) throw new CofferError('not_found', 'no such connector definition', [{ field, reason: 'not found' }]);
    return def;
  }

  async function requireActor(actorId: string, field = 'actor_id', kind: Kind = 'connector'): Promise<ActorRow> {
    const actor = await findActor(db, schema, actorId);
    if (!actor || kindOf(actor.actor_type) !== kind) throw new CofferError('not_found', 'no such actor', [{ field, reason: 'not found' }]);
    return actor;
  }

  function parseBounded(text: string, field: string): Record<string, unknown> {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > deps.maxConfigBytes) throw invalid(field, `is ${bytes} bytes; the limit is ${deps.maxConfigBytes}`);
    return parseJsonObject(text, field);
  }

  /** Validates against the spec and splits the secrets out; nothing is written yet. */
  function plan(workspaceId: string, spec: unknown, configJson: string, stored?: unknown) {
    const config = parseBounded(configJson, 'config_json');
    compileSpec(spec, 'definition spec').validate(config, 'config_json');
    let planned: ReturnType<typeof split>;
    try {
      planned = split(spec, config, { stored, newBaseCoordinate: () => baseCoordinate(deps.coordinatePrefix, workspaceId, newId()) });
    } catch (err) {
      if (err instanceof SecretJsonError) throw invalid(`config_json:${err.path}`, 'cannot be split', `config_json ${err.message}`);
      throw err;
    }
    // Every secret the config holds, new or kept (masked), counts: nothing is written beyond the limit.
    const held = secretCoordinates(planned.partialConfig).length;
    if (held > maxSecretsPerConfig) throw invalid('config_json', 'holds too many secrets', `config_json holds ${held} secret values; the limit is ${maxSecretsPerConfig}`);
    return planned;
  }

  /**
   * Writes at secrets for `owner`, taking a turn of the workspace's lane (the caller's workspace for
   * check and discover); `onTurn` runs first within the turn, so a call refused a turn leaves nothing.
   */
  async function writeSecrets(
    workspaceId: string,
    writes: PlannedSecretWrite[],
    owner: SecretsOwner,
    lane = workspaceId,
    onTurn?: () => Promise<void>,
    send: SendSecrets = (o) => secrets.write(workspaceId, writes.map((w) => ({ baseCoordinate: w.baseCoordinate, expectedVersion: w.version - 1, value: w.value })), o),
  ): Promise<void> {
    if (writes.length === 0) return;
    await secretWriteTurns.run(lane, async () => {
      await onTurn?.();
      await send(owner);
    });
  }

  /**
   * The bases an actor's partial config holds at secret positions of its spec, in its own
   * workspace: the only ones config wrote for it, so the only ones shredded on its behalf.
   */
  async function ownBases(definitionId: string, workspaceId: string, partial: unknown): Promise<string[]> {
    const def = await findDefinition(db, schema, definitionId);
    const coordinates = def ? ownSecretCoordinates(def.spec, partial) : [];
    const mine = `${deps.coordinatePrefix}_workspace_${workspaceId}_secret_`;
    return [...new Set(coordinates.filter((c) => c.startsWith(mine)).map(baseOf))];
  }

  /** The OAuth declaration of an actor's definition when it names a revocation endpoint and the config holds a stored refresh token. */
  async function revocableOAuth(definitionId: string, partial: unknown): Promise<Record<string, unknown> | undefined> {
    const def = await findDefinition(db, schema, definitionId);
    const declared = def?.spec && typeof def.spec === 'object' ? (def.spec as Record<string, unknown>)[OAUTH_KEYWORD] : undefined;
    if (!declared || typeof declared !== 'object' || typeof (declared as Record<string, unknown>).revocation_endpoint !== 'string') return undefined;
    const ref = partial && typeof partial === 'object' ? (partial as Record<string, unknown>).refresh_token : undefined;
    return ref && typeof ref === 'object' && typeof (ref as Record<string, unknown>)._secret === 'string' ? (declared as Record<string, unknown>) : undefined;
  }

  /**
   * Shreds, at secrets, every queued coordinate that is due. The queue is filled in the same
   * transaction as the event that orphaned the coordinates, so a secrets outage delays the
   * shredding but never loses it: failures are retried with backoff until secrets confirms. Each
   * entry is held (row lock, skipped by others) from its claim to its confirmation, so replicas and
   * concurrent runs never shred the same entry at once; a crash lets go of it with the transaction.
   */
  async function shredPending(limit = 200): Promise<number> {
    let shredded = 0;
    for (let i = 0; i < limit; i++) {
      const outcome = await db.transaction().execute(async (trx) => {
        const item = await claimDueShredding(trx, schema, clock());
        if (!item) return 'none' as const;
        try {
          await deps.fault?.('before-secrets-delete');
          if (item.coordinate.startsWith(WORKSPACE_SWEEP)) await secrets.deleteWorkspace(item.workspace_id);
          else await secrets.delete(item.workspace_id, [item.coordinate], item.actor_id ?? '', item.write_id ?? undefined);
          await deps.fault?.('after-secrets-delete');
        } catch (err) {
          // not_found: secrets never stored it (or forgot the base): nothing left to shred.
          if (!(isCofferError(err) && err.code === 'not_found')) {
            const code = isCofferError(err) ? err.code : 'internal';
            await postponeShredding(trx, schema, [item.coordinate], clock(), code);
            if (item.attempts === 0) logger.warn({ actorId: item.actor_id, entry: shortHash(item.coordinate), code }, 'secrets could not shred an orphaned secret yet; retrying');
            return 'postponed' as const;
          }
        }
        await store.appendInTransaction(trx, `shredding-${item.workspace_id}`, 'any', [
          { type: 'OrphanedSecretShredded', data: { workspaceId: item.workspace_id, actorId: item.actor_id, coordinate: item.coordinate, shreddedAt: clock().toISOString() }, metadata: { actor: 'config-shredder' } },
        ], { project: (t) => completeShredding(t, schema, [item.coordinate]) });
        return 'shredded' as const;
      });
      if (outcome === 'none') break;
      if (outcome === 'shredded') shredded++;
    }
    return shredded;
  }

  // One shredding run at a time in this process: a call during a run waits for one more run after
  // it (which sees what the caller queued), instead of starting a rival run or holding a connection.
  let shredRun: Promise<number> | undefined;
  let shredRerun: Promise<number> | undefined;
  function shredNow(): Promise<number> {
    if (!shredRun) {
      shredRun = shredPending()
        .catch((err: unknown) => {
          logger.warn({ err }, 'shredding orphaned secrets failed; the background job retries');
          return 0;
        })
        .finally(() => {
          shredRun = undefined;
        });
      return shredRun;
    }
    shredRerun ??= shredRun.then(() => {
      shredRerun = undefined;
      return shredNow();
    });
    return shredRerun;
  }

  /**
   * Destroys a check/discover run's secrets once it has answered (or timed out); queued first, so an
   * outage only delays it, and the 2-hour expiry at secrets stays the backstop.
   */
  async function discardEphemeral(jobId: string, writes: PlannedSecretWrite[]): Promise<void> {
    if (writes.length === 0) return;
    try {
      await queueShredding(db, schema, EPHEMERAL_WORKSPACE_ID, jobId, [...new Set(writes.map((w) => w.baseCoordinate))], 'check answered', clock());
    } catch (err) {
      logger.warn({ err, jobId }, 'could not queue the secrets of an answered check for shredding; they expire');
      return;
    }
    await shredNow();
  }

  /**
   * Plans each write of a stored base after the highest version secrets holds of it: a version a
   * lost write already took (a crash, a change that lost a race) is never an obstacle.
   */
  async function atSecretsLatest(workspaceId: string, planned: ReturnType<typeof split>): Promise<ReturnType<typeof split>> {
    const stored = [...new Set(planned.writes.filter((w) => w.version > 1).map((w) => w.baseCoordinate))];
    if (stored.length === 0) return planned;
    return atNextVersions(planned, await secrets.latestVersions(workspaceId, stored));
  }

  /**
   * The cross-service write of an actor change. The planned coordinates are recorded as an intent
   * in config's own transaction first, then written at secrets; `append` records the event, and its
   * projection must call `claim`, which removes the intent in the event's transaction. Whatever
   * fails or crashes, the coordinates are either referenced by the event or still in an intent that
   * the recovery loop queues for shredding ({@link recoverInterruptedWrites}).
   */
  async function writeThenAppend(
    workspaceId: string,
    actorId: string,
    operation: WriteOperation,
    writes: PlannedSecretWrite[],
    append: (claim: (trx: Transaction<ConfigDatabase>) => Promise<void>) => Promise<unknown>,
    send?: SendSecrets,
  ): Promise<void> {
    if (writes.length === 0) {
      await append(async () => undefined);
      return;
    }
    const intentId = newId();
    let recorded = false;
    const record = async () => {
      await recordWriteIntent(db, schema, { intentId, workspaceId, actorId, operation, coordinates: writes.map((w) => w.coordinate), recordedAt: clock() });
      recorded = true;
    };
    try {
      await writeSecrets(workspaceId, writes, { ownerId: actorId, writeId: intentId }, workspaceId, record, send);
    } catch (err) {
      // A refusal wrote nothing (WriteSecrets is all or nothing). A call left unanswered may still
      // commit at secrets: its intent stays, and recovery shreds it once the grace period is over.
      if (recorded && isCofferError(err) && err.code !== 'unavailable' && err.code !== 'internal') {
        await dropWriteIntent(db, schema, intentId).catch((e: unknown) => logger.warn({ err: e, actorId }, 'could not drop a refused write intent; recovery removes it'));
      }
      throw err;
    }
    await deps.fault?.('after-secrets-write');
    try {
      await append(async (trx) => {
        if (!(await claimWriteIntent(trx, schema, intentId))) throw new CofferError('unavailable', 'the change took too long and was rolled back; try again');
      });
    } catch (err) {
      try {
        await abandonWriteIntents(db, schema, { intentId }, 'written for a failed change', clock());
      } catch (e) {
        logger.error({ err: e, actorId, count: writes.length }, 'could not queue the secrets of a failed change for shredding; recovery does it');
      }
      await shredNow();
      throw err;
    }
  }

  /**
   * Queues for shredding the coordinates of every write intent older than the grace period: its
   * change died between recording the intent and appending its event (a crash, a lost connection),
   * so nothing references them. Runs at start-up and periodically.
   */
  async function recoverInterruptedWrites(limit = 100): Promise<number> {
    const olderThan = new Date(clock().getTime() - (deps.writeIntentGraceMs ?? 60_000));
    const abandoned = await abandonWriteIntents(db, schema, { olderThan, limit }, 'write interrupted', clock());
    if (abandoned.length === 0) return 0;
    logger.warn({ intents: abandoned.length, actorIds: abandoned.map((a) => a.actorId) }, 'secret writes of interrupted changes found; their versions are queued for shredding');
    await shredNow();
    return abandoned.length;
  }

  async function requireWorkspace(workspaceId: string) {
    const ws = await findWorkspace(db, schema, workspaceId);
    if (!ws) throw new CofferError('not_found', 'no such workspace', [{ field: 'workspace_id', reason: 'not found' }]);
    return ws;
  }

  function actorView(row: { actor_id: string; workspace_id: string; definition_id: string; actor_type: actorDomain.ActorType; name: string; version: number }, spec: unknown, partial: unknown): ActorView {
    return {
      actorId: row.actor_id,
      workspaceId: row.workspace_id,
      definitionId: row.definition_id,
      actorType: row.actor_type,
      name: row.name,
      configJson: JSON.stringify(mask(spec, partial)),
      version: row.version,
    };
  }

  async function loadCatalog(streamId: string) {
    const { currentVersion, events } = await store.readStream(streamId);
    const state = events.reduce((s, e) => catalogDomain.evolve(s, { type: e.type, data: e.data } as unknown as catalogDomain.CatalogEvent), catalogDomain.initialState());
    return { state, version: currentVersion };
  }

  /**
   * The references at secret fields of an actor's own workspace, or the one at `field` (a concrete
   * path; `api_key` stands for `$.api_key`), refused naming the field when it holds none.
   */
  function secretFieldsOf(spec: unknown, workspaceId: string, partial: unknown, field: string): { path: string; coordinate: string }[] {
    const mine = `${deps.coordinatePrefix}_workspace_${workspaceId}_secret_`;
    const refs = secretReferences(spec, partial).filter((r) => r.coordinate.startsWith(mine));
    if (!field) return refs;
    const path = field.startsWith('$') ? field : `$.${field}`;
    const found = refs.filter((r) => r.path === path);
    if (found.length === 0) throw invalid('field', 'is not a secret field this actor holds a value for');
    return found;
  }

  async function actorSecretView(workspaceId: string, ref: { path: string; coordinate: string }): Promise<ActorSecretView> {
    const current = versionOf(ref.coordinate);
    const versions = await secrets.listVersions(workspaceId, baseOf(ref.coordinate));
    return {
      field: ref.path,
      baseCoordinate: baseOf(ref.coordinate),
      currentVersion: current,
      versions: versions.map((v) => ({ version: v.version, state: v.state, createdAt: v.createdAt, current: v.version === current })).sort((a, b) => a.version - b.version),
    };
  }

  function checkVersion(what: string, id: string, expected: number, actual: number): void {
    if (expected !== 0 && expected !== actual) throw new CofferError('version_conflict', `the ${what} was changed concurrently (now at version ${actual}); read it again`);
  }

  const api = {
    shredPending,
    shredNow,
    recoverInterruptedWrites,

    /**
     * Checks (or discovers with) an unsaved config: its secrets are written as ephemeral coordinates
     * (check/discover workspace, 2-hour expiry), a CheckRequested goes to the sync worker, and its
     * CheckCompleted answer is returned. Nothing of the config is stored but the partial config.
     */
    async runCheck(kind: 'check' | 'discover', input: { definitionId: string; configJson: string; workspaceId: string }, caller: Caller) {
      if (!deps.checkResults) throw new CofferError('unavailable', 'check and discover are not enabled on this config service');
      if (!input.workspaceId) throw invalid('workspace_id', 'is required');
      const ws = await requireWorkspace(input.workspaceId);
      const def = await requireDefinition(input.definitionId);
      if (kindOf(def.actor_type) !== 'connector') throw new CofferError('not_found', 'no such connector definition', [{ field: 'definition_id', reason: 'not found' }]);
      const planned = plan(EPHEMERAL_WORKSPACE_ID, def.spec, input.configJson);
      const jobId = newId();
      const waiting = deps.checkResults.wait(jobId, deps.checkTimeoutMs ?? 60_000);
      try {
        // Bound to the caller's workspace and to this one run: no other config can hydrate them.
        await writeSecrets(EPHEMERAL_WORKSPACE_ID, planned.writes, { ownerId: jobId, ownerWorkspaceId: ws.workspace_id }, ws.workspace_id);
        const partialConfigJson = JSON.stringify(planned.partialConfig);
        await store.append(
          `check-${jobId}`,
          0,
          [
            {
              type: 'CheckRequested',
              data: { jobId, kind, workspaceId: ws.workspace_id, definitionId: def.definition_id, connector: def.connector, partialConfig: planned.partialConfig, requestedAt: now() },
              metadata: metadata(caller),
            },
          ],
          { outbox: outbox('CheckRequested', jobId, caller, (r) => ({ jobId, kind, connector: def.connector, partialConfigJson, occurredAt: r.recordedAt.toISOString(), workspaceId: ws.workspace_id })) },
        );
        const result = await waiting.result;
        return { jobId, succeeded: result.succeeded, message: result.message, catalogJson: result.catalogJson };
      } finally {
        waiting.cancel();
        await discardEphemeral(jobId, planned.writes);
      }
    },

    /** Registers the built-in webhook definition once (replicas racing on it are fine). */
    async ensureBuiltins(): Promise<void> {
      if (await findDefinition(db, schema, WEBHOOK_DEFINITION_ID)) return;
      const events = catalogDomain.decide(
        { type: 'RegisterConnectorDefinition', definitionId: WEBHOOK_DEFINITION_ID, name: 'Webhook', actorType: 'webhook', connector: 'coffer:webhook', spec: WEBHOOK_SPEC, now: now() },
        catalogDomain.initialState(),
      );
      const data = events[0]!.data as catalogDomain.ConnectorDefinitionRegisteredData;
      await store.append(`definition-${WEBHOOK_DEFINITION_ID}`, 0, asNew(events, { subject: 'config' }), { project: (trx) => projectDefinitionRegistered(trx, schema, data) }).catch((err: unknown) => {
        if (!(isCofferError(err) && err.code === 'version_conflict')) throw err;
      });
    },

    /** Workspaces, a page at a time. */
    async listWorkspaces(page?: PageInput, only: { organizationId?: string; workspaceId?: string } = {}): Promise<PageOf<WorkspaceView>> {
      const { after, limit } = pageOf(page);
      const { rows, more } = await listWorkspaces(db, schema, after, limit, only);
      return { items: rows.map(wsView), nextPageToken: nextToken(rows, more, (r) => r.workspace_id) };
    },

    /** The owner of a workspace, an actor or a connection; undefined when there is none. */
    async ownerOf(target: { workspaceId?: string; actorId?: string; connectionId?: string }): Promise<Owner | undefined> {
      if (target.workspaceId !== undefined) {
        const ws = await findWorkspace(db, schema, target.workspaceId);
        return ws ? { workspaceId: ws.workspace_id, organizationId: ws.organization_id ?? '' } : undefined;
      }
      const row = target.actorId !== undefined ? await findOwner(db, schema, 'actors', target.actorId) : await findOwner(db, schema, 'connections', target.connectionId ?? '');
      return row ? { workspaceId: row.workspace_id, organizationId: row.organization_id ?? '' } : undefined;
    },

    /** Renames a workspace, with an expected version (0 skips the check). */
    async updateWorkspace(input: { workspaceId: string; expectedVersion: number; name: string }, caller: Caller): Promise<WorkspaceView> {
      const name = requireName(input.name);
      const { state, version } = await loadCatalog(`workspace-${input.workspaceId}`);
      checkVersion('workspace', input.workspaceId, input.expectedVersion, version);
      const events = catalogDomain.decide({ type: 'RenameWorkspace', name, now: now() }, state);
      await store.append(`workspace-${input.workspaceId}`, version, asNew(events, caller), {
        project: (trx) => patchRow(trx, schema, 'workspaces', 'workspace_id', input.workspaceId, { name, version: version + 1 }),
      });
      return { ...wsView(await requireWorkspace(input.workspaceId)), name, version: version + 1 };
    },

    /**
     * Deletes a workspace with every source, destination and connection in it, in one transaction,
     * then shreds all its secrets at secrets (queued with the events, so an outage only delays it).
     */
    async deleteWorkspace(input: { workspaceId: string; expectedVersion: number }, caller: Caller): Promise<number> {
      const { state, version } = await loadCatalog(`workspace-${input.workspaceId}`);
      checkVersion('workspace', input.workspaceId, input.expectedVersion, version);
      const at = now();
      const wsEvents = catalogDomain.decide({ type: 'DeleteWorkspace', now: at }, state);
      const actorIds = await workspaceActorIds(db, schema, input.workspaceId);
      const connectionIds = await workspaceConnectionIds(db, schema, input.workspaceId);
      const actors = await Promise.all(
        actorIds.map(async (id) => {
          const loaded = await loadActor(id);
          const bases = loaded.state.status === 'active' ? await ownBases(loaded.state.definitionId!, input.workspaceId, loaded.state.partialConfig) : [];
          return { id, ...loaded, bases };
        }),
      );
      const connections = await Promise.all(connectionIds.map(async (id) => ({ id, ...(await loadConnection(id)) })));
      await db.transaction().execute(async (trx) => {
        await store.appendInTransaction(trx, `workspace-${input.workspaceId}`, version, asNew(wsEvents, caller), {
          project: async (t) => {
            await patchRow(t, schema, 'workspaces', 'workspace_id', input.workspaceId, { deleted: true, version: version + 1 });
            await queueShredding(t, schema, input.workspaceId, null, [`${WORKSPACE_SWEEP}${input.workspaceId}`], 'workspace deleted', clock());
          },
          outbox: outbox('WorkspaceDeleted', input.workspaceId, caller, () => ({ workspaceId: input.workspaceId, occurredAt: at })),
        });
        for (const a of actors) {
          if (a.state.status !== 'active') continue;
          const bases = a.bases;
          const events = actorDomain.decide({ type: 'DeleteActor', shredBases: bases, now: at }, a.state);
          const data = events[0]!.data as actorDomain.ActorDeletedData;
          await store.appendInTransaction(trx, `actor-${a.id}`, a.version, asNew(events, caller), {
            project: async (t) => {
              await projectActorDeleted(t, schema, data, a.version + 1);
              await queueShredding(t, schema, input.workspaceId, a.id, bases, 'workspace deleted', clock());
            },
            outbox: outbox(actorEvent(a.state.actorType!, 'Deleted') as 'SourceDeleted', a.id, caller, () => ({ actorId: a.id, workspaceId: input.workspaceId, occurredAt: at })),
          });
        }
        for (const c of connections) {
          if (!c.state.exists || c.state.deleted) continue;
          const events = connectionDomain.decide({ type: 'DeleteConnection', now: at }, c.state);
          await store.appendInTransaction(trx, `connection-${c.id}`, c.version, asNew(events, caller), {
            project: (t) => patchRow(t, schema, 'connections', 'connection_id', c.id, { deleted: true, version: c.version + 1 }),
            outbox: outbox('ConnectionDeleted', c.id, caller, () => ({ connectionId: c.id, workspaceId: input.workspaceId, occurredAt: at })),
          });
        }
      });
      await shredNow();
      return actors.filter((a) => a.state.status === 'active').length;
    },

    /** Connector definitions, a page at a time, optionally of one type. */
    async listDefinitions(input: { actorType?: actorDomain.ActorType; page?: PageInput }): Promise<PageOf<DefinitionView>> {
      const { after, limit } = pageOf(input.page);
      const { rows, more } = await listDefinitions(db, schema, typesOf('connector', input.actorType), after, limit);
      return {
        items: rows.map((d) => ({ definitionId: d.definition_id, name: d.name, actorType: d.actor_type, connector: d.connector, specJson: JSON.stringify(d.spec), version: d.version })),
        nextPageToken: nextToken(rows, more, (r) => r.definition_id),
      };
    },

    /** Records a new version of a definition's spec; configs are validated against the latest version. */
    async updateDefinition(input: { definitionId: string; expectedVersion: number; name: string; specJson: string }, caller: Caller): Promise<DefinitionView> {
      const name = requireName(input.name);
      const spec = parseBounded(input.specJson, 'spec_json');
      compileSpec(spec, 'spec_json');
      checkOAuthDeclaration(spec as Record<string, unknown>, 'spec_json');
      checkProxyDeclaration(spec as Record<string, unknown>, 'spec_json');
      if (input.definitionId === WEBHOOK_DEFINITION_ID) throw new CofferError('failed_precondition', 'the built-in webhook definition cannot be changed');
      const { state, version } = await loadCatalog(`definition-${input.definitionId}`);
      checkVersion('connector definition', input.definitionId, input.expectedVersion, version);
      const events = catalogDomain.decide({ type: 'UpdateConnectorDefinition', name, spec, now: now() }, state);
      await store.append(`definition-${input.definitionId}`, version, asNew(events, caller), {
        project: (trx) => patchRow(trx, schema, 'connector_definitions', 'definition_id', input.definitionId, { name, spec: JSON.stringify(spec), version: version + 1 }),
      });
      const def = await requireDefinition(input.definitionId);
      return { definitionId: def.definition_id, name, actorType: def.actor_type, connector: def.connector, specJson: JSON.stringify(spec), version: version + 1 };
    },

    /** Deletes a connector definition no source or destination uses. */
    async deleteDefinition(input: { definitionId: string; expectedVersion: number }, caller: Caller): Promise<void> {
      if (input.definitionId === WEBHOOK_DEFINITION_ID) throw new CofferError('failed_precondition', 'the built-in webhook definition cannot be deleted');
      const { state, version } = await loadCatalog(`definition-${input.definitionId}`);
      checkVersion('connector definition', input.definitionId, input.expectedVersion, version);
      const events = catalogDomain.decide({ type: 'DeleteConnectorDefinition', actorsUsingIt: await countActorsOfDefinition(db, schema, input.definitionId), now: now() }, state);
      await store.append(`definition-${input.definitionId}`, version, asNew(events, caller), {
        project: (trx) => patchRow(trx, schema, 'connector_definitions', 'definition_id', input.definitionId, { deleted: true, version: version + 1 }),
      });
    },

    /** Sources and destinations of a workspace, masked, a page at a time. */
    async listActors(input: { workspaceId: string; actorType?: actorDomain.ActorType; page?: PageInput }, kind: Kind = 'connector'): Promise<PageOf<ActorView>> {
      const ws = await requireWorkspace(input.workspaceId);
      const { after, limit } = pageOf(input.page);
      const { rows, more } = await listActors(db, schema, ws.workspace_id, typesOf(kind, input.actorType), after, limit);
      return { items: rows.map((a) => actorView(a, a.spec, a.partial_config)), nextPageToken: nextToken(rows, more, (r) => r.actor_id) };
    },

    /** Connections of a workspace, a page at a time. */
    async listConnections(input: { workspaceId: string; page?: PageInput }): Promise<PageOf<ConnectionView>> {
      const ws = await requireWorkspace(input.workspaceId);
      const { after, limit } = pageOf(input.page);
      const { rows, more } = await listConnections(db, schema, ws.workspace_id, after, limit);
      return {
        items: rows.map((c) => ({ connectionId: c.connection_id, workspaceId: c.workspace_id, sourceId: c.source_id, destinationId: c.destination_id, name: c.name, version: c.version })),
        nextPageToken: nextToken(rows, more, (r) => r.connection_id),
      };
    },

    /** Renames a connection, with an expected version. */
    async updateConnection(input: { connectionId: string; expectedVersion: number; name: string }, caller: Caller): Promise<ConnectionView> {
      const name = requireName(input.name);
      const { state, version } = await loadConnection(input.connectionId);
      checkVersion('connection', input.connectionId, input.expectedVersion, version);
      const events = connectionDomain.decide({ type: 'RenameConnection', name, now: now() }, state);
      await store.append(`connection-${input.connectionId}`, version, asNew(events, caller), {
        project: (trx) => patchRow(trx, schema, 'connections', 'connection_id', input.connectionId, { name, version: version + 1 }),
      });
      return { connectionId: input.connectionId, workspaceId: state.workspaceId!, sourceId: state.sourceId!, destinationId: state.destinationId!, name, version: version + 1 };
    },

    /** Deletes a connection; its source and destination stay. */
    async deleteConnection(input: { connectionId: string; expectedVersion: number }, caller: Caller): Promise<void> {
      const { state, version } = await loadConnection(input.connectionId);
      checkVersion('connection', input.connectionId, input.expectedVersion, version);
      const at = now();
      const events = connectionDomain.decide({ type: 'DeleteConnection', now: at }, state);
      await store.append(`connection-${input.connectionId}`, version, asNew(events, caller), {
        project: (trx) => patchRow(trx, schema, 'connections', 'connection_id', input.connectionId, { deleted: true, version: version + 1 }),
        outbox: outbox('ConnectionDeleted', input.connectionId, caller, () => ({ connectionId: input.connectionId, workspaceId: state.workspaceId!, occurredAt: at })),
      });
    },

    /** Creates a workspace. */
    async createWorkspace(input: { name: string; organizationId?: string; externalUserId?: string }, caller: Caller, workspaceId = newId()): Promise<WorkspaceView> {
      const organizationId = input.organizationId ?? '';
      const externalUserId = input.externalUserId ?? '';
      if (organizationId.length > 200) throw new CofferError('invalid_argument', 'organization_id is too long', [{ field: 'organization_id', reason: 'too long' }]);
      const events = catalogDomain.decide({ type: 'CreateWorkspace', workspaceId, name: requireName(input.name), organizationId, externalUserId, now: now() }, catalogDomain.initialState());
      const data = events[0]!.data as catalogDomain.WorkspaceCreatedData;
      await store.append(`workspace-${workspaceId}`, 0, asNew(events, caller), {
        project: (trx) => projectWorkspaceCreated(trx, schema, data),
        outbox: outbox('WorkspaceCreated', workspaceId, caller, () => ({ workspaceId, name: data.name, occurredAt: data.createdAt, organizationId, externalUserId })),
      });
      return { workspaceId, name: data.name, version: 1, organizationId, externalUserId };
    },

    /** The workspace of an organization's end user, made on first use; concurrent first uses make one. */
    async provisionWorkspace(input: { organizationId: string; externalUserId: string; name: string }, caller: Caller): Promise<{ workspace: WorkspaceView; created: boolean }> {
      if (!input.organizationId) throw new CofferError('invalid_argument', 'organization_id is required', [{ field: 'organization_id', reason: 'required' }]);
      if (!input.externalUserId || input.externalUserId.length > 200) {
        throw new CofferError('invalid_argument', 'external_user_id must be 1 to 200 characters', [{ field: 'external_user_id', reason: 'invalid' }]);
      }
      const existing = await findEndUserWorkspace(db, schema, input.organizationId, input.externalUserId);
      if (existing) return { workspace: wsView(existing), created: false };
      try {
        return { workspace: await api.createWorkspace({ ...input, name: input.name || `end user ${input.externalUserId}` }, caller), created: true };
      } catch (err) {
        // The unique index on (organization, end user) lost us the race: the winner's workspace is the one.
        const winner = await findEndUserWorkspace(db, schema, input.organizationId, input.externalUserId);
        if (winner) return { workspace: wsView(winner), created: false };
        throw err;
      }
    },

    /** One workspace. */
    async getWorkspace(workspaceId: string): Promise<WorkspaceView> {
      return wsView(await requireWorkspace(workspaceId));
    },

    /** Registers a connector definition after checking its spec compiles. */
    async registerDefinition(
      input: { name: string; actorType: actorDomain.ActorType | undefined; connector: string; specJson: string },
      caller: Caller,
      definitionId = newId(),
    ): Promise<DefinitionView> {
      const name = requireName(input.name);
      if (!input.actorType) throw invalid('actor_type', 'must be SOURCE or DESTINATION');
      if (!CONNECTOR.test(input.connector)) throw invalid('connector', 'must look like "builtin:http-json"');
      const spec = parseBounded(input.specJson, 'spec_json');
      compileSpec(spec, 'spec_json');
      checkOAuthDeclaration(spec as Record<string, unknown>, 'spec_json');
      checkProxyDeclaration(spec as Record<string, unknown>, 'spec_json');
      const events = catalogDomain.decide(
        { type: 'RegisterConnectorDefinition', definitionId, name, actorType: input.actorType, connector: input.connector, spec, now: now() },
        catalogDomain.initialState(),
      );
      const data = events[0]!.data as catalogDomain.ConnectorDefinitionRegisteredData;
      await store.append(`definition-${definitionId}`, 0, asNew(events, caller), {
        project: (trx) => projectDefinitionRegistered(trx, schema, data),
        outbox: outbox('ConnectorDefinitionRegistered', definitionId, caller, () => ({ definitionId, name, connector: input.connector, occurredAt: data.registeredAt })),
      });
      return { definitionId, name, actorType: input.actorType, connector: input.connector, specJson: JSON.stringify(spec), version: 1 };
    },

    /** One connector definition. */
    async getDefinition(definitionId: string): Promise<DefinitionView> {
      const def = await requireDefinition(definitionId);
      return { definitionId: def.definition_id, name: def.name, actorType: def.actor_type, connector: def.connector, specJson: JSON.stringify(def.spec), version: def.version };
    },

    /** Creates a source or destination: validate, write the secrets, then record the partial config. */
    async createActor(input: { workspaceId: string; definitionId: string; name: string; configJson: string }, caller: Caller, kind: Kind = 'connector', actorId = newId()): Promise<ActorView> {
      const name = requireName(input.name);
      const ws = await requireWorkspace(input.workspaceId);
      const def = await requireDefinition(input.definitionId);
      if (kindOf(def.actor_type) !== kind) throw new CofferError('not_found', 'no such connector definition', [{ field: 'definition_id', reason: 'not found' }]);
      const planned = plan(ws.workspace_id, def.spec, input.configJson);
      const events = actorDomain.decide(
        { type: 'CreateActor', actorId, workspaceId: ws.workspace_id, definitionId: def.definition_id, actorType: def.actor_type, name, partialConfig: planned.partialConfig, now: now() },
        actorDomain.initialState(),
      );
      const data = events[0]!.data as actorDomain.ActorCreatedData;
      await writeThenAppend(ws.workspace_id, actorId, 'create', planned.writes, (claim) =>
        store.append(`actor-${actorId}`, 0, asNew(events, caller), {
          project: async (trx) => {
            await claim(trx);
            await projectActorCreated(trx, schema, data);
          },
          outbox: outbox(actorEvent(def.actor_type, 'Created') as 'SourceCreated', actorId, caller, () => ({
            actorId,
            workspaceId: ws.workspace_id,
            definitionId: def.definition_id,
            actorType: def.actor_type,
            changedFields: changedFields(undefined, planned.partialConfig),
            occurredAt: data.createdAt,
          })),
        }),
      );
      return actorView({ actor_id: actorId, workspace_id: ws.workspace_id, definition_id: def.definition_id, actor_type: def.actor_type, name, version: 1 }, def.spec, planned.partialConfig);
    },

    /** One actor, every secret masked. */
    async getActor(actorId: string, kind: Kind = 'connector'): Promise<ActorView> {
      const actor = await requireActor(actorId, kind === 'webhook' ? 'webhook_id' : 'actor_id', kind);
      const def = await requireDefinition(actor.definition_id);
      return actorView(actor, def.spec, actor.partial_config);
    },

    /**
     * Replaces an actor's configuration: a masked secret keeps its coordinate, a new value becomes
     * the next version of the same base; bases the new config no longer uses are destroyed after.
     */
    async updateActor(input: { actorId: string; expectedVersion: number; name: string; configJson: string }, caller: Caller, kind: Kind = 'connector'): Promise<ActorView> {
      const name = requireName(input.name);
      const { state, version } = await loadActor(input.actorId);
      if (state.status !== 'active' || kindOf(state.actorType!) !== kind) throw new CofferError('not_found', 'no such actor', [{ field: 'actor_id', reason: 'not found' }]);
      if (input.expectedVersion !== 0 && input.expectedVersion !== version) {
        throw new CofferError('version_conflict', `the actor was changed concurrently (now at version ${version}); read it again`);
      }
      const def = await requireDefinition(state.definitionId!);
      const workspaceId = state.workspaceId!;
      const planned = await atSecretsLatest(workspaceId, plan(workspaceId, def.spec, input.configJson, state.partialConfig));
      // Older versions of a base still in use stay as history; a base nothing refers to any more is shredded.
      const liveBases = new Set(ownSecretCoordinates(def.spec, planned.partialConfig).map(baseOf));
      const mine = `${deps.coordinatePrefix}_workspace_${workspaceId}_secret_`;
      const deadBases = [...new Set(planned.orphans.filter((c) => c.startsWith(mine)).map(baseOf))].filter((b) => !liveBases.has(b));
      const events = actorDomain.decide({ type: 'UpdateActorConfig', name, partialConfig: planned.partialConfig, shredBases: deadBases, now: now() }, state);
      const data = events[0]!.data as actorDomain.ActorConfigUpdatedData;
      await writeThenAppend(workspaceId, input.actorId, 'update', planned.writes, (claim) =>
        store.append(`actor-${input.actorId}`, version, asNew(events, caller), {
          project: async (trx) => {
            await claim(trx);
            await projectActorUpdated(trx, schema, data, version + 1);
            await queueShredding(trx, schema, workspaceId, input.actorId, deadBases, 'no longer referenced', clock());
          },
          outbox: outbox(actorEvent(state.actorType!, 'ConfigUpdated') as 'SourceConfigUpdated', input.actorId, caller, () => ({
            actorId: input.actorId,
            workspaceId,
            definitionId: def.definition_id,
            changedFields: changedFields(state.partialConfig, planned.partialConfig),
            version: version + 1,
            occurredAt: data.updatedAt,
          })),
        }),
      );
      await shredNow();
      return actorView(
        { actor_id: input.actorId, workspace_id: workspaceId, definition_id: def.definition_id, actor_type: def.actor_type, name, version: version + 1 },
        def.spec,
        planned.partialConfig,
      );
    },

    /** The secret fields of a source or destination (or the one named), each with the versions secrets holds of it; never a value. */
    async listActorSecretVersions(input: { actorId: string; field: string }): Promise<ActorSecretView[]> {
      const { state } = await loadActor(input.actorId);
      if (state.status !== 'active' || kindOf(state.actorType!) !== 'connector') throw new CofferError('not_found', 'no such actor', [{ field: 'actor_id', reason: 'not found' }]);
      const def = await requireDefinition(state.definitionId!);
      const refs = secretFieldsOf(def.spec, state.workspaceId!, state.partialConfig, input.field);
      return Promise.all(refs.map((ref) => actorSecretView(state.workspaceId!, ref)));
    },

    /**
     * Makes an earlier, still active version of one secret field current again: secrets writes its
     * value as the next version (a rollback, so config never sees it), and the actor refers to that
     * version in an ActorConfigUpdated. A cross-service write like any update: recorded as an intent
     * first, so a crash between the two leaves nothing that recovery does not shred.
     */
    async rollbackActorSecret(input: { actorId: string; field: string; toVersion: number; expectedVersion: number }, caller: Caller): Promise<{ actor: ActorView; secret: ActorSecretView }> {
      if (!input.field) throw invalid('field', 'is required');
      if (!Number.isSafeInteger(input.toVersion) || input.toVersion < 1) throw invalid('to_version', 'must be a positive integer');
      const { state, version } = await loadActor(input.actorId);
      if (state.status !== 'active' || kindOf(state.actorType!) !== 'connector') throw new CofferError('not_found', 'no such actor', [{ field: 'actor_id', reason: 'not found' }]);
      checkVersion('actor', input.actorId, input.expectedVersion, version);
      const def = await requireDefinition(state.definitionId!);
      const workspaceId = state.workspaceId!;
      const [ref] = secretFieldsOf(def.spec, workspaceId, state.partialConfig, input.field);
      const base = baseOf(ref!.coordinate);
      const versions = await secrets.listVersions(workspaceId, base);
      const target = versions.find((v) => v.version === input.toVersion);
      if (!target) throw invalid('to_version', `is not a version of ${ref!.path}`);
      if (target.state !== 'active') throw new CofferError('failed_precondition', `version ${input.toVersion} of ${ref!.path} is ${target.state}: its value is gone`, [{ field: 'to_version', reason: target.state }]);
      if (input.toVersion === versionOf(ref!.coordinate)) throw new CofferError('failed_precondition', `version ${input.toVersion} of ${ref!.path} is already current`, [{ field: 'to_version', reason: 'current' }]);
      const latest = Math.max(...versions.map((v) => v.version));
      const coordinate = `${base}_v${latest + 1}`;
      const partialConfig = replaceSecretReference(state.partialConfig, ref!.coordinate, coordinate);
      const events = actorDomain.decide({ type: 'UpdateActorConfig', name: state.name, partialConfig, shredBases: [], now: now() }, state);
      const data = events[0]!.data as actorDomain.ActorConfigUpdatedData;
      // The value stays at secrets: the planned write only names the coordinate the intent records.
      const write: PlannedSecretWrite = { path: ref!.path, baseCoordinate: base, version: latest + 1, coordinate, value: '' };
      await writeThenAppend(
        workspaceId,
        input.actorId,
        'rollback',
        [write],
        (claim) =>
          store.append(`actor-${input.actorId}`, version, asNew(events, caller), {
            project: async (trx) => {
              await claim(trx);
              await projectActorUpdated(trx, schema, data, version + 1);
            },
            outbox: outbox(actorEvent(state.actorType!, 'ConfigUpdated') as 'SourceConfigUpdated', input.actorId, caller, () => ({
              actorId: input.actorId,
              workspaceId,
              definitionId: def.definition_id,
              changedFields: changedFields(state.partialConfig, partialConfig),
              version: version + 1,
              occurredAt: data.updatedAt,
            })),
          }),
        (owner) => secrets.rollback(workspaceId, base, input.toVersion, latest, owner),
      );
      const actor = actorView(
        { actor_id: input.actorId, workspace_id: workspaceId, definition_id: def.definition_id, actor_type: def.actor_type, name: state.name, version: version + 1 },
        def.spec,
        partialConfig,
      );
      return { actor, secret: await actorSecretView(workspaceId, { path: ref!.path, coordinate }) };
    },

    /** Deletes an actor, then destroys every version of each of its secrets. */
    async deleteActor(input: { actorId: string; expectedVersion: number }, caller: Caller, kind: Kind = 'connector'): Promise<void> {
      const { state, version } = await loadActor(input.actorId);
      if (state.status !== 'active' || kindOf(state.actorType!) !== kind) throw new CofferError('not_found', 'no such actor', [{ field: 'actor_id', reason: 'not found' }]);
      if (input.expectedVersion !== 0 && input.expectedVersion !== version) {
        throw new CofferError('version_conflict', `the actor was changed concurrently (now at version ${version}); read it again`);
      }
      const bases = await ownBases(state.definitionId!, state.workspaceId!, state.partialConfig);
      const events = actorDomain.decide({ type: 'DeleteActor', shredBases: bases, now: now() }, state);
      const data = events[0]!.data as actorDomain.ActorDeletedData;
      // An OAuth grant the provider can revoke is revoked before its secrets are shredded: the
      // shredding is queued with the delete but held until the sync worker says it is done (or the
      // hold runs out), so the worker can still hydrate the refresh token. No race: nothing shreds
      // these bases before the hold ends.
      const oauth = await revocableOAuth(state.definitionId!, state.partialConfig);
      const at = clock();
      const holdUntil = oauth ? new Date(at.getTime() + (deps.revocationHoldMs ?? 3_600_000)) : at;
      const deleted = outbox(actorEvent(state.actorType!, 'Deleted') as 'SourceDeleted', input.actorId, caller, () => ({ actorId: input.actorId, workspaceId: data.workspaceId, occurredAt: data.deletedAt }));
      const revocation = outbox('CredentialRevocationRequested', input.actorId, caller, () => ({ actorId: input.actorId, workspaceId: data.workspaceId, occurredAt: data.deletedAt }));
      await store.append(`actor-${input.actorId}`, version, asNew(events, caller), {
        project: async (trx) => {
          await projectActorDeleted(trx, schema, data, version + 1);
          await queueShredding(trx, schema, data.workspaceId, input.actorId, bases, 'actor deleted', at, null, holdUntil);
          if (oauth) await recordCredentialRevocation(trx, schema, { actor_id: input.actorId, workspace_id: data.workspaceId, partial_config: state.partialConfig, oauth }, at, holdUntil);
        },
        outbox: (recorded) => [
          ...deleted(recorded),
          ...(oauth ? revocation(recorded.map((r) => ({ ...r, eventId: derivedEventId(r.eventId, 'revocation') }))) : []),
        ],
      });
      await shredNow();
    },

    /** The pending revocation of a deleted OAuth actor's grant (its partial config and OAuth declaration), for the sync worker. */
    async getCredentialRevocation(actorId: string): Promise<{ actorId: string; workspaceId: string; partialConfigJson: string; oauthJson: string }> {
      requireActorId(actorId);
      const row = await findCredentialRevocation(db, schema, actorId);
      if (!row) throw new CofferError('not_found', 'no revocation pending for this actor', [{ field: 'actor_id', reason: 'not found' }]);
      return { actorId: row.actor_id, workspaceId: row.workspace_id, partialConfigJson: JSON.stringify(row.partial_config), oauthJson: JSON.stringify(row.oauth) };
    },

    /** Ends the hold on a deleted OAuth actor's secrets (revoked at the provider, or given up): they are shredded now. */
    async completeCredentialRevocation(actorId: string): Promise<void> {
      requireActorId(actorId);
      const released = await db.transaction().execute((trx) => releaseCredentialRevocation(trx, schema, actorId, clock()));
      if (!released) throw new CofferError('not_found', 'no revocation pending for this actor', [{ field: 'actor_id', reason: 'not found' }]);
      await shredNow();
    },

    /**
     * Starts an OAuth 2.0 authorization code flow that creates an actor of an OAuth definition, or
     * (with `actorId`) authorizes an existing one again. A new actor's id is chosen now. The client
     * credentials and the PKCE verifier are written to secrets as the actor's coordinates (new bases),
     * and their shredding is queued, held until the flow expires, in the same transaction as the
     * flow, so a flow that never completes (or a crash) leaves no secret behind. Config keeps only
     * the state's hash; the answer is the authorization URL.
     */
    async startOAuthFlow(
      input: { workspaceId: string; definitionId: string; name: string; configJson: string; redirectUri: string; clientId: string; clientSecret: string; actorId?: string },
      caller: Caller & { key: string },
    ): Promise<{ authorizationUrl: string; expiresAt: string }> {
      const ws = await requireWorkspace(input.workspaceId);
      if (!input.redirectUri) throw invalid('redirect_uri', 'is required');
      if (!(deps.oauthRedirectUris ?? []).includes(input.redirectUri)) throw invalid('redirect_uri', 'is not one of the redirect URIs of this deployment (CONFIG_OAUTH_REDIRECT_URIS)');
      for (const [field, value] of [['client_id', input.clientId], ['client_secret', input.clientSecret]] as const) {
        if (!value) throw invalid(field, 'is required');
        if (value.length > 4096) throw invalid(field, 'must be at most 4096 characters');
      }
      const reauthorize = Boolean(input.actorId);
      let def: Awaited<ReturnType<typeof requireDefinition>>;
      let name: string;
      let partialConfig: Record<string, unknown>;
      let writes: PlannedSecretWrite[];
      let actorId: string;
      if (input.actorId) {
        for (const [field, value] of [['definition_id', input.definitionId], ['name', input.name], ['config_json', input.configJson]] as const) {
          if (value) throw invalid(field, 'must be empty when actor_id is set: the actor keeps its own');
        }
        const { state } = await loadActor(input.actorId);
        if (state.status !== 'active' || kindOf(state.actorType!) !== 'connector' || state.workspaceId !== ws.workspace_id) throw new CofferError('not_found', 'no such actor', [{ field: 'actor_id', reason: 'not found' }]);
        def = await requireDefinition(state.definitionId!);
        name = state.name!;
        actorId = input.actorId;
        const mine = `${deps.coordinatePrefix}_workspace_${ws.workspace_id}_secret_`;
        const current = (state.partialConfig ?? {}) as Record<string, unknown>;
        for (const f of OAUTH_FIELDS) {
          const ref = (current[f] as { _secret?: unknown } | undefined)?._secret;
          if (typeof ref !== 'string' || !ref.startsWith(mine)) throw new CofferError('failed_precondition', `the actor holds no stored ${f}`, [{ field: 'actor_id', reason: `no ${f}` }]);
        }
        // The client is written again, as new bases: the authorization URL needs its id, which config cannot read back.
        writes = (['client_id', 'client_secret'] as const).map((f) => {
          const base = baseCoordinate(deps.coordinatePrefix, ws.workspace_id, newId());
          return { path: `$.${f}`, baseCoordinate: base, version: 1, coordinate: `${base}_v1`, value: f === 'client_id' ? input.clientId : input.clientSecret };
        });
        partialConfig = { ...current, client_id: { _secret: writes[0]!.coordinate }, client_secret: { _secret: writes[1]!.coordinate } };
      } else {
        name = requireName(input.name);
        def = await requireDefinition(input.definitionId);
        actorId = newId();
        const config = parseBounded(input.configJson || '{}', 'config_json');
        for (const field of OAUTH_FIELDS) {
          if (field in config) throw invalid(`config_json:$.${field}`, 'is set by the OAuth flow', `config_json must not hold ${field}: the flow sets it`);
        }
        // Validated and split as the actor will be stored; the token fields hold placeholders that are
        // never written: their new bases are where the sync worker writes the tokens.
        const placeholders = { refresh_token: 'pending', access_token: 'pending', token_expiry_date: new Date(0).toISOString() };
        const planned = plan(ws.workspace_id, def.spec, JSON.stringify({ ...config, client_id: input.clientId, client_secret: input.clientSecret, ...placeholders }));
        if (!OAUTH_FIELDS.every((f) => planned.writes.some((w) => w.path === `$.${f}`))) throw invalid('definition_id', 'declares the OAuth credential fields where the flow cannot set them');
        // Every secret but the tokens is written now (the client credentials, and any other secret field the config sets).
        writes = planned.writes.filter((w) => !TOKEN_FIELDS.some((f) => w.path === `$.${f}`));
        // The token bases are queued too: the sync worker writes them before config records the actor.
        partialConfig = planned.partialConfig as Record<string, unknown>;
      }
      if (kindOf(def.actor_type) !== 'connector') throw new CofferError('not_found', 'no such connector definition', [{ field: 'definition_id', reason: 'not found' }]);
      const declared = (def.spec as Record<string, unknown> | null)?.[OAUTH_KEYWORD] as Record<string, unknown> | undefined;
      if (!declared || typeof declared.authorization_endpoint !== 'string') {
        throw new CofferError('failed_precondition', `the definition declares no ${OAUTH_KEYWORD}.authorization_endpoint`, [{ field: reauthorize ? 'actor_id' : 'definition_id', reason: 'no authorization endpoint' }]);
      }
      const verifier = randomBytes(32).toString('base64url');
      const verifierBase = baseCoordinate(deps.coordinatePrefix, ws.workspace_id, newId());
      const verifierWrite: PlannedSecretWrite = { path: '$.code_verifier', baseCoordinate: verifierBase, version: 1, coordinate: `${verifierBase}_v1`, value: verifier };
      const state = randomBytes(32).toString('base64url');
      const flowId = newId();
      const at = clock();
      const expiresAt = new Date(at.getTime() + (deps.oauthFlowTtlMs ?? 600_000));
      const queued = [...(reauthorize ? writes.map((w) => w.baseCoordinate) : OAUTH_FIELDS.map((f) => baseOf((partialConfig[f] as { _secret: string })._secret))), verifierBase];
      await db.transaction().execute(async (trx) => {
        await insertOAuthFlow(trx, schema, {
          flow_id: flowId,
          state_hash: hashState(state),
          workspace_id: ws.workspace_id,
          caller: caller.key,
          actor_id: actorId,
          reauthorize,
          definition_id: def.definition_id,
          name,
          partial_config: partialConfig,
          verifier_coordinate: verifierWrite.coordinate,
          redirect_uri: input.redirectUri,
          created_at: at,
          expires_at: expiresAt,
        });
        await queueShredding(trx, schema, ws.workspace_id, actorId, queued, 'OAuth flow not completed', at, null, new Date(expiresAt.getTime() + FLOW_HOLD_GRACE_MS));
      });
      try {
        await writeSecrets(ws.workspace_id, [...writes, verifierWrite], { ownerId: actorId, writeId: flowId });
      } catch (err) {
        await claimOAuthFlow(db, schema, flowId, clock(), 'secrets write failed').catch(() => false);
        throw err;
      }
      const url = new URL(declared.authorization_endpoint);
      const scopes = Array.isArray(declared.scopes) ? (declared.scopes as string[]) : [];
      url.searchParams.set('response_type', 'code');
      // The client id is public in OAuth (RFC 6749 §2.2): the provider needs it in the browser's request.
      url.searchParams.set('client_id', input.clientId);
      url.searchParams.set('redirect_uri', input.redirectUri);
      if (scopes.length > 0) url.searchParams.set('scope', scopes.join(' '));
      url.searchParams.set('state', state);
      url.searchParams.set('code_challenge', createHash('sha256').update(verifier).digest('base64url'));
      url.searchParams.set('code_challenge_method', 'S256');
      logger.info({ workspaceId: ws.workspace_id, definitionId: def.definition_id, actorId, flowId, reauthorize }, 'OAuth authorization code flow started');
      return { authorizationUrl: url.toString(), expiresAt: expiresAt.toISOString() };
    },

    /**
     * Completes a flow with what the provider sent to the redirect URI. The state must be pending,
     * unexpired and the caller's own (anything else is refused and changes nothing); it is then used
     * up, whatever follows. A sync worker exchanges the code (with the PKCE verifier) and writes the
     * tokens to secrets as the actor's coordinates (new bases for a new actor, the next versions of
     * its token fields for an existing one, queued by their write id until the actor refers to them);
     * the actor is recorded with them, and the verifier is shredded. A failed exchange shreds
     * everything the flow wrote.
     */
    async completeOAuthFlow(input: { state: string; code: string; error: string }, caller: Caller & { key: string }): Promise<ActorView> {
      if (!input.state) throw invalid('state', 'is required');
      if (input.state.length > 512) throw invalid('state', 'must be at most 512 characters');
      if (input.error && !/^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,200}$/.test(input.error)) throw invalid('error', 'must be an OAuth error code');
      if (!input.error && !input.code) throw invalid('code', 'is required unless error is set');
      if (input.code.length > 4096) throw invalid('code', 'must be at most 4096 characters');
      const flow = await findOAuthFlow(db, schema, hashState(input.state));
      // Another caller's state is answered as an unknown one: no state is an oracle.
      if (!flow || flow.caller !== caller.key) throw new CofferError('not_found', 'no pending OAuth flow has this state', [{ field: 'state', reason: 'not found' }]);
      if (flow.ended_at) throw new CofferError('failed_precondition', 'this state was already used; start the flow again', [{ field: 'state', reason: 'used' }]);
      if (flow.expires_at.getTime() <= clock().getTime()) throw new CofferError('failed_precondition', 'this state expired; start the flow again', [{ field: 'state', reason: 'expired' }]);
      const def = await requireDefinition(flow.definition_id);
      const declared = (def.spec as Record<string, unknown> | null)?.[OAUTH_KEYWORD];
      if (!deps.oauthCodeExchange) throw new CofferError('unavailable', 'OAuth code exchange is not enabled on this config service');
      if (!(await claimOAuthFlow(db, schema, flow.flow_id, clock(), input.error ? 'refused by the provider' : 'exchanging'))) {
        throw new CofferError('failed_precondition', 'this state was already used; start the flow again', [{ field: 'state', reason: 'used' }]);
      }
      const refIn = (partial: Record<string, unknown>, field: string) => ((partial[field] as { _secret?: string } | undefined)?._secret ?? '') as string;
      const clientBases = (['client_id', 'client_secret'] as const).map((f) => baseOf(refIn(flow.partial_config, f)));
      // What this flow queued for shredding (held): released at once when the flow fails.
      let queued = flow.reauthorize ? [...clientBases, baseOf(flow.verifier_coordinate)] : [...OAUTH_FIELDS.map((f) => baseOf(refIn(flow.partial_config, f))), baseOf(flow.verifier_coordinate)];
      const abandon = async (outcome: string) => {
        try {
          await db.transaction().execute(async (trx) => {
            await setOAuthFlowOutcome(trx, schema, flow.flow_id, outcome);
            await releaseShreddingNow(trx, schema, queued, clock());
          });
        } catch (err) {
          logger.warn({ err, flowId: flow.flow_id }, 'could not release the secrets of a failed OAuth flow now; they are shredded when the hold ends');
        }
        await shredNow();
      };
      if (input.error) {
        await abandon('refused by the provider');
        throw new CofferError('failed_precondition', `the provider did not authorize the client (${input.error})`, [{ field: 'error', reason: input.error }]);
      }
      // The config the tokens join: the flow's for a new actor, the actor's as it is now for an existing one.
      let base: { partial: Record<string, unknown>; version: number; state?: actorDomain.ActorState };
      const expected: Record<(typeof TOKEN_FIELDS)[number], number> = { access_token: 0, refresh_token: 0, token_expiry_date: 0 };
      let tokenCoordinates: string[] = [];
      try {
        if (flow.reauthorize) {
          const { state, version } = await loadActor(flow.actor_id);
          if (state.status !== 'active' || state.workspaceId !== flow.workspace_id) throw new CofferError('failed_precondition', 'the actor of this flow was deleted', [{ field: 'state', reason: 'actor deleted' }]);
          base = { partial: { ...(state.partialConfig as Record<string, unknown>), client_id: flow.partial_config.client_id, client_secret: flow.partial_config.client_secret }, version, state };
          const tokenBases = TOKEN_FIELDS.map((f) => baseOf(refIn(base.partial, f)));
          const latest = await secrets.latestVersions(flow.workspace_id, tokenBases);
          TOKEN_FIELDS.forEach((f, i) => (expected[f] = latest.get(tokenBases[i]!) ?? 0));
          tokenCoordinates = TOKEN_FIELDS.map((f, i) => `${tokenBases[i]}_v${expected[f] + 1}`);
          // Until the actor refers to them, the new versions are this write's alone to shred.
          await queueShredding(db, schema, flow.workspace_id, flow.actor_id, tokenCoordinates, 'OAuth flow not completed', clock(), flow.flow_id, new Date(clock().getTime() + FLOW_HOLD_GRACE_MS));
          queued = [...queued, ...tokenCoordinates];
        } else {
          base = { partial: flow.partial_config, version: 0 };
          tokenCoordinates = TOKEN_FIELDS.map((f) => refIn(base.partial, f));
        }
      } catch (err) {
        await abandon(`preparing the exchange failed (${isCofferError(err) ? err.code : 'internal'})`);
        throw err;
      }
      let tokens;
      try {
        tokens = await deps.oauthCodeExchange({
          workspaceId: flow.workspace_id,
          actorId: flow.actor_id,
          oauthJson: JSON.stringify(declared),
          partialConfigJson: JSON.stringify({ client_id: flow.partial_config.client_id, client_secret: flow.partial_config.client_secret, code_verifier: { _secret: flow.verifier_coordinate } }),
          code: input.code,
          redirectUri: flow.redirect_uri,
          accessTokenBase: baseOf(tokenCoordinates[0]!),
          refreshTokenBase: baseOf(tokenCoordinates[1]!),
          tokenExpiryDateBase: baseOf(tokenCoordinates[2]!),
          accessTokenExpectedVersion: expected.access_token,
          refreshTokenExpectedVersion: expected.refresh_token,
          tokenExpiryDateExpectedVersion: expected.token_expiry_date,
          writeId: flow.flow_id,
        });
      } catch (err) {
        await abandon(`exchange failed (${isCofferError(err) ? err.code : 'internal'})`);
        throw err;
      }
      const written = [tokens.accessTokenCoordinate, tokens.refreshTokenCoordinate, tokens.tokenExpiryDateCoordinate];
      if (written.some((c, i) => c !== tokenCoordinates[i])) {
        await abandon('the sync worker wrote unexpected coordinates');
        throw new CofferError('internal', 'the OAuth tokens were not stored where expected');
      }
      const partial = { ...base.partial };
      TOKEN_FIELDS.forEach((f, i) => (partial[f] = { _secret: written[i] }));
      // The actor refers to its credential now: only the verifier (and a replaced client) is left to shred.
      const referenced = [...clientBases, ...(flow.reauthorize ? tokenCoordinates : TOKEN_FIELDS.map((f) => baseOf(refIn(partial, f))))];
      const finish = async (trx: Transaction<ConfigDatabase>) => {
        await completeShredding(trx, schema, referenced);
        await releaseShreddingNow(trx, schema, [baseOf(flow.verifier_coordinate)], clock());
        await setOAuthFlowOutcome(trx, schema, flow.flow_id, 'completed');
      };
      let version: number;
      try {
        if (flow.reauthorize) {
          const state = base.state!;
          const mine = `${deps.coordinatePrefix}_workspace_${flow.workspace_id}_secret_`;
          const oldClientBases = (['client_id', 'client_secret'] as const).map((f) => baseOf(refIn(state.partialConfig as Record<string, unknown>, f))).filter((b) => b.startsWith(mine));
          const events = actorDomain.decide({ type: 'UpdateActorConfig', name: state.name!, partialConfig: partial, shredBases: oldClientBases, now: now() }, state);
          const data = events[0]!.data as actorDomain.ActorConfigUpdatedData;
          await store.append(`actor-${flow.actor_id}`, base.version, asNew(events, caller), {
            project: async (trx) => {
              await projectActorUpdated(trx, schema, data, base.version + 1);
              await queueShredding(trx, schema, flow.workspace_id, flow.actor_id, oldClientBases, 'replaced by an OAuth flow', clock());
              await finish(trx);
            },
            outbox: outbox(actorEvent(def.actor_type, 'ConfigUpdated') as 'SourceConfigUpdated', flow.actor_id, caller, () => ({
              actorId: flow.actor_id,
              workspaceId: flow.workspace_id,
              definitionId: def.definition_id,
              changedFields: changedFields(state.partialConfig, partial),
              version: base.version + 1,
              occurredAt: data.updatedAt,
            })),
          });
          version = base.version + 1;
        } else {
          const events = actorDomain.decide(
            { type: 'CreateActor', actorId: flow.actor_id, workspaceId: flow.workspace_id, definitionId: def.definition_id, actorType: def.actor_type, name: flow.name, partialConfig: partial, now: now() },
            actorDomain.initialState(),
          );
          const data = events[0]!.data as actorDomain.ActorCreatedData;
          await store.append(`actor-${flow.actor_id}`, 0, asNew(events, caller), {
            project: async (trx) => {
              await projectActorCreated(trx, schema, data);
              await finish(trx);
            },
            outbox: outbox(actorEvent(def.actor_type, 'Created') as 'SourceCreated', flow.actor_id, caller, () => ({
              actorId: flow.actor_id,
              workspaceId: flow.workspace_id,
              definitionId: def.definition_id,
              actorType: def.actor_type,
              changedFields: changedFields(undefined, partial),
              occurredAt: data.createdAt,
            })),
          });
          version = 1;
        }
      } catch (err) {
        await abandon('recording the actor failed');
        throw err;
      }
      await shredNow();
      logger.info({ workspaceId: flow.workspace_id, actorId: flow.actor_id, flowId: flow.flow_id, reauthorize: flow.reauthorize }, 'OAuth authorization code flow completed');
      return actorView({ actor_id: flow.actor_id, workspace_id: flow.workspace_id, definition_id: def.definition_id, actor_type: def.actor_type, name: flow.name, version }, def.spec, partial);
    },

    /** Links a source to a destination of the same workspace. */
    async createConnection(input: { workspaceId: string; sourceId: string; destinationId: string; name: string }, caller: Caller, connectionId = newId()): Promise<ConnectionView> {
      const name = requireName(input.name);
      const ws = await requireWorkspace(input.workspaceId);
      // An actor of another workspace is answered as one that does not exist: ids are no oracle.
      const inWorkspace = async (actorId: string, field: string) => {
        const actor = await findActor(db, schema, actorId);
        if (!actor || actor.workspace_id !== ws.workspace_id || kindOf(actor.actor_type) !== 'connector') throw new CofferError('not_found', 'no such actor', [{ field, reason: 'not found' }]);
        return actor;
      };
      const source = await inWorkspace(input.sourceId, 'source_id');
      const destination = await inWorkspace(input.destinationId, 'destination_id');
      if (source.actor_type !== 'source') throw invalid('source_id', 'must be a source');
      if (destination.actor_type !== 'destination') throw invalid('destination_id', 'must be a destination');
      const events = connectionDomain.decide(
        { type: 'CreateConnection', connectionId, workspaceId: ws.workspace_id, sourceId: source.actor_id, destinationId: destination.actor_id, name, now: now() },
        connectionDomain.initialState(),
      );
      const data = events[0]!.data as connectionDomain.ConnectionCreatedData;
      await store.append(`connection-${connectionId}`, 0, asNew(events, caller), {
        project: (trx) => projectConnectionCreated(trx, schema, data),
        outbox: outbox('ConnectionCreated', connectionId, caller, () => ({
          connectionId,
          workspaceId: data.workspaceId,
          sourceId: data.sourceId,
          destinationId: data.destinationId,
          occurredAt: data.createdAt,
        })),
      });
      return { connectionId, workspaceId: data.workspaceId, sourceId: data.sourceId, destinationId: data.destinationId, name, version: 1 };
    },

    /** One connection. */
    async getConnection(connectionId: string): Promise<ConnectionView> {
      const c = await findConnection(db, schema, connectionId);
      if (!c) throw new CofferError('not_found', 'no such connection', [{ field: 'connection_id', reason: 'not found' }]);
      return { connectionId: c.connection_id, workspaceId: c.workspace_id, sourceId: c.source_id, destinationId: c.destination_id, name: c.name, version: c.version };
    },

    /** Records SyncRequested; a sync worker picks it up from the stream. */
    async requestSync(connectionId: string, caller: Caller, jobId = newId()): Promise<string> {
      const { state, version, events: history } = await loadConnection(connectionId);
      if (!state.exists) throw new CofferError('not_found', 'no such connection', [{ field: 'connection_id', reason: 'not found' }]);
      for (const [id, field] of [[state.sourceId!, 'source'], [state.destinationId!, 'destination']] as const) {
        if (!(await findActor(db, schema, id))) throw new CofferError('failed_precondition', `the connection's ${field} was deleted`);
      }
      const events = connectionDomain.decide({ type: 'RequestSync', jobId, alreadyRequested: history.some((e) => e.type === 'SyncRequested' && e.data.jobId === jobId), now: now() }, state);
      const data = events[0]!.data as connectionDomain.SyncRequestedData;
      await store.append(`connection-${connectionId}`, version, asNew(events, caller), {
        project: (trx) => trx.withSchema(schema).updateTable('connections').set({ version: version + 1 }).where('connection_id', '=', connectionId).execute(),
        outbox: outbox('SyncRequested', jobId, caller, () => ({ jobId, connectionId, workspaceId: data.workspaceId, occurredAt: data.requestedAt })),
      });
      return jobId;
    },

    /** The partial (secret-free) configs of a connection's source and destination, for the sync worker. */
    async getSyncPlan(connectionId: string): Promise<SyncPlanView> {
      const c = await findConnection(db, schema, connectionId);
      if (!c) throw new CofferError('not_found', 'no such connection', [{ field: 'connection_id', reason: 'not found' }]);
      const side = async (actorId: string, which: string) => {
        const actor = await findActor(db, schema, actorId);
        if (!actor) throw new CofferError('failed_precondition', `the connection's ${which} was deleted`);
        const def = await requireDefinition(actor.definition_id);
        // A reference outside a secret field (stored before such configs were refused) is never handed out to hydrate.
        if (secretCoordinates(actor.partial_config).length !== ownSecretCoordinates(def.spec, actor.partial_config).length) {
          throw new CofferError('failed_precondition', `the connection's ${which} holds a secret reference outside a secret field; update its config`);
        }
        return { actorId, connector: def.connector, partialConfigJson: JSON.stringify(actor.partial_config), oauthJson: oauthDeclarationJson(def.spec) };
      };
      return { connectionId, workspaceId: c.workspace_id, source: await side(c.source_id, 'source'), destination: await side(c.destination_id, 'destination') };
    },

    /**
     * Forwards one HTTP request to the sync worker, which sends it to the actor's API with the actor's
     * credential. The caller's access to the actor is checked before (scope guard); `workspaceId`, when
     * given, must be the actor's own, else the actor is answered as one that does not exist.
     */
    async proxyRequest(input: ProxyInput): Promise<ProxyOutput> {
      if (!proxy) throw new CofferError('unavailable', 'this config service is not connected to a sync worker');
      requireActorId(input.actorId);
      const actor = await findActor(db, schema, input.actorId);
      if (!actor || kindOf(actor.actor_type) !== 'connector' || (input.workspaceId && actor.workspace_id !== input.workspaceId)) {
        throw new CofferError('not_found', 'no such actor', [{ field: 'actor_id', reason: 'not found' }]);
      }
      const def = await requireDefinition(actor.definition_id);
      const proxyJson = proxyDeclarationJson(def.spec);
      if (!proxyJson) throw new CofferError('failed_precondition', `the actor's connector definition declares no ${PROXY_KEYWORD}`);
      if (secretCoordinates(actor.partial_config).length !== ownSecretCoordinates(def.spec, actor.partial_config).length) {
        throw new CofferError('failed_precondition', 'the actor holds a secret reference outside a secret field; update its config');
      }
      return proxy.forward({
        workspaceId: actor.workspace_id,
        actorId: actor.actor_id,
        partialConfigJson: JSON.stringify(actor.partial_config),
        proxyJson,
        oauthJson: oauthDeclarationJson(def.spec),
        method: input.method,
        path: input.path,
        headers: input.headers,
        body: input.body,
      });
    },
  };
  // Each create, keyed by an optional request_id, runs at most once (the raw ones above take the derived id).
  return { ...api, ...idempotentCreates(api, { store, newId }) };
}

/** The config use cases, as composed by main.ts. */
export type ConfigService = ReturnType<typeof createConfigService>;

/** A second event id derived from an appended event's, so a re-relay publishes the second message once too. */
/** The OAuth credential fields of a config (the declaration requires each as a top-level secret). */
const OAUTH_FIELDS = ['client_id', 'client_secret', 'refresh_token', 'access_token', 'token_expiry_date'] as const;
/** The fields the provider's tokens fill, in the order the exchange answers them. */
const TOKEN_FIELDS = ['access_token', 'refresh_token', 'token_expiry_date'] as const;
/** How long past its state's expiry a flow's secrets stay held: the longest a completion may still be writing. */
const FLOW_HOLD_GRACE_MS = 5 * 60_000;

/** Config keeps a flow's state only as this hash: the table alone cannot complete a flow. */
function hashState(state: string): string {
  return createHash('sha256').update(state).digest('hex');
}

function derivedEventId(eventId: string, purpose: string): string {
  const h = createHash('sha256').update(`${eventId}:${purpose}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function requireActorId(actorId: string): void {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(actorId)) throw new CofferError('invalid_argument', 'actor_id must be a uuid', [{ field: 'actor_id', reason: 'must be a uuid' }]);
}
