import type { Kysely } from 'kysely';
import {
  CofferError,
  EPHEMERAL_WORKSPACE_ID,
  isCofferError,
  baseCoordinate,
  parseBaseCoordinate,
  parseCoordinate,
  type IntegrationEventMessage,
  type MessagingNamespace,
} from '@coffer/contracts';
import { MAIN_CHAIN, type AppendedEvent, type EventStore, type OutboxMessage } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import { SecretJsonError, hydrate, secretCoordinates } from '@coffer/secret-json';
import { metrics } from '@opentelemetry/api';
import { randomUUID } from 'node:crypto';
import type { SecretsConfig } from './config';
import { createDataKeyCache, type DataKeyCache } from './data-key-cache';
import { createGroupCommit } from './group-commit';
import {
  decide,
  evolve,
  initialState,
  type DataKeyRewrappedData,
  type SecretEvent,
  type SecretExpiredData,
  type SecretState,
  type SecretVersionDestroyedData,
  type SecretVersionWrittenData,
} from './domain/secret.decider';
import { bindingOf, openWithKey, seal } from './envelope';
import type { KeyManagementService, WrappedKey } from './kms/kms';
import {
  countDataKeysByKekVersion,
  findDueForExpiry,
  findLatestVersions,
  findLiveBases,
  findStaleDataKeys,
  findVersions,
  listVersions,
  observeKekVersion,
  projectExpired,
  projectRewrapped,
  projectVersionDestroyed,
  projectVersionsWritten,
  writtenBy,
  type SecretVersionRow,
} from './secrets.postgres';
import type { SecretsDatabase } from './secrets.database';

/** Who asks, as recorded in events: a service identity and, optionally, on whose behalf. */
export interface Actor {
  subject: string;
  onBehalfOf?: string;
  traceparent?: string;
}

export interface SecretWriteInput {
  baseCoordinate: string;
  expectedVersion: number;
  value: string;
  /** Seconds until the version expires; 0 or absent: the default for the workspace. */
  ttlSeconds?: number;
}

/** Whom a write's secrets belong to: an actor (or a check/discover job) of a workspace. */
export interface SecretOwner {
  /** The actor id or check/discover job id; empty: no owner named (the secret stays bound to its workspace only). */
  ownerId?: string;
  /** Required in the check/discover workspace (the workspace that ran the check); elsewhere empty or the workspace itself. */
  ownerWorkspaceId?: string;
  /** The writer's id of this write, kept with each version, so it can later destroy exactly what this write made. */
  writeId?: string;
}

const WRITE_ID = /^[A-Za-z0-9._:~-]{1,64}$/;

/** An optional write id: empty, or 1–64 letters, digits or `._:~-`. */
function requireWriteId(writeId: string | undefined): string | undefined {
  if (!writeId) return undefined;
  if (!WRITE_ID.test(writeId)) throw new CofferError('invalid_argument', 'write_id must be 1 to 64 letters, digits or ._:~-', [{ field: 'write_id', reason: 'malformed' }]);
  return writeId;
}

export interface WrittenSecret {
  coordinate: string;
  baseCoordinate: string;
  version: number;
}

export interface VersionInfo {
  coordinate: string;
  version: number;
  state: 'active' | 'destroyed' | 'expired';
  createdAt: string;
  createdBy: string;
  kekVersion: number;
}

export interface SecretsServiceDeps {
  /** Workspaces with a hydration metric series of their own (default {@link DEFAULT_HYDRATION_METRIC_WORKSPACES}). */
  hydrationMetricWorkspaces?: number;
  db: Kysely<SecretsDatabase>;
  store: EventStore<SecretsDatabase>;
  kms: KeyManagementService;
  schema: string;
  coordinatePrefix: string;
  namespace: MessagingNamespace;
  ephemeralTtlMs: number;
  /** Unwrapped data keys kept in memory (bounded, expiring). */
  cache: DataKeyCache;
  /** How often the KEK is rotated by `rotateIfDue` (ms). */
  rotationPeriodMs: number;
  /** Most secret values one WriteSecrets may carry; default 100. */
  maxSecretsPerRequest?: number;
  /** Rows per insert statement when writing secrets; default 100. */
  writeBatchSize?: number;
  /** Most hydrate calls audited by one append (group commit); default 64. */
  hydrateBatchSize?: number;
  clock: () => Date;
  newId: () => string;
}

const MAX_VALUE_BYTES = 64 * 1024;
const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;
const REWRAP_BATCH = 100;
/** Passes of a delete that lost a race on one of its bases before the conflict reaches the caller. */
const DELETE_ATTEMPTS = 5;
/** Most bases one GetLatestSecretVersions may name. */
const MAX_LATEST_BASES = 100;
const WRITE_BATCH = 100;
// Hydrate calls per batch: their audit events fit one insert statement (the event store's 100 rows).
const DEFAULT_HYDRATE_BATCH = 64;
/** The default of `maxSecretsPerRequest`. */
export const DEFAULT_MAX_SECRETS_PER_REQUEST = 100;
const SOURCE = 'coffer/secrets';
const streamOf = (base: string) => `secret-${base}`;
const HYDRATIONS = 'hydrations-';
type SecretsHydratedEntry = IntegrationEventMessage<'SecretsHydratedBatch'>['hydrations'][number];
/** Body bytes of one SecretsHydratedBatch message at most: far below NATS's default max_payload (1 MiB). */
const HYDRATED_BATCH_MAX_BYTES = 256 * 1024;
/** Distinct coordinates one hydrate may reference, so its audit entry always fits one message. */
export const MAX_COORDINATES_PER_HYDRATE = 1000;

/** The workspace a secret's stream (`secret-<prefix>_workspace_<id>_secret_<id>`) belongs to. */
const WORKSPACE_OF_SECRET_STREAM = /^secret-.+?_workspace_(.+?)_secret_/;

/**
 * The hash chain of a stream. Appends to a chain take turns on its lock until they commit. Each
 * workspace's hydration audit trail is a chain of its own, so recording a read never waits for a
 * write; the secrets of one workspace share one, so one workspace's writes never wait for another's.
 * Everything else (the KEK's streams) joins the main chain. Events written before secrets had
 * chains per workspace stay on the main chain, where `audit verify` checks them as before.
 */
export const secretsChainOf = (streamId: string): string => {
  if (streamId.startsWith(HYDRATIONS)) return streamId;
  const workspace = WORKSPACE_OF_SECRET_STREAM.exec(streamId)?.[1];
  return workspace ? `workspace-${workspace}` : MAIN_CHAIN;
};

/** Workspaces that get a `coffer.secrets.hydrations` series of their own; the rest are counted under `other`. */
export const DEFAULT_HYDRATION_METRIC_WORKSPACES = 1000;

/**
 * Counts hydrations by workspace. One series per workspace is what an operator asks for (who reads
 * secrets, how often), but workspaces are unbounded: the first `limit` seen since start get their own
 * `workspace_id`, later ones share `workspace_id="other"`, so a replica holds at most `limit + 1` series.
 */
function hydrationCounter(limit: number): (workspaceId: string, secrets: number) => void {
  const meter = metrics.getMeter('@coffer/secrets');
  const calls = meter.createCounter('coffer.secrets.hydrations', { description: 'hydrations served, by workspace (bounded, see the README)' });
  const values = meter.createCounter('coffer.secrets.hydrated_values', { description: 'secret values hydrated, by workspace (bounded, see the README)' });
  const labelled = new Set<string>();
  return (workspaceId, secrets) => {
    if (!labelled.has(workspaceId) && labelled.size < limit) labelled.add(workspaceId);
    const attributes = { workspace_id: labelled.has(workspaceId) ? workspaceId : 'other' };
    calls.add(1, attributes);
    values.add(secrets, attributes);
  };
}

/** The secrets service's use cases: write, hydrate, delete and list, over the event store and the KMS. */
export function createSecretsService(deps: SecretsServiceDeps) {
  const { db, store, kms, schema, coordinatePrefix: prefix, namespace: ns, cache, clock, newId } = deps;
  const maxSecretsPerRequest = deps.maxSecretsPerRequest ?? DEFAULT_MAX_SECRETS_PER_REQUEST;
  const writeBatchSize = deps.writeBatchSize ?? WRITE_BATCH;
  const metadataOf = (actor: Actor, extra: Record<string, unknown> = {}) => ({ actor: actor.subject, onBehalfOf: actor.onBehalfOf, traceparent: actor.traceparent, ...extra });

  const ID = /^[A-Za-z0-9-]{1,64}$/;
  const hydrations = hydrationCounter(deps.hydrationMetricWorkspaces ?? DEFAULT_HYDRATION_METRIC_WORKSPACES);

  function requireOwnerId(ownerId: string, required: boolean): string | null {
    if (!ownerId && !required) return null;
    if (!ID.test(ownerId)) throw new CofferError('invalid_argument', 'owner_id must be 1-64 letters, digits or dashes', [{ field: 'owner_id', reason: 'invalid' }]);
    return ownerId;
  }

  /** The owner a write binds its secrets to; a check/discover write must name the workspace that runs it. */
  function ownerOfWrite(workspaceId: string, owner: SecretOwner): { ownerId: string | null; ownerWorkspaceId: string } {
    const ephemeral = workspaceId === EPHEMERAL_WORKSPACE_ID;
    const ownerId = requireOwnerId(owner.ownerId ?? '', ephemeral);
    const ownerWorkspaceId = owner.ownerWorkspaceId ?? '';
    if (ephemeral) {
      if (!ID.test(ownerWorkspaceId) || ownerWorkspaceId === EPHEMERAL_WORKSPACE_ID) {
        throw new CofferError('invalid_argument', 'owner_workspace_id must name the workspace that runs the check', [{ field: 'owner_workspace_id', reason: 'required' }]);
      }
      return { ownerId, ownerWorkspaceId };
    }
    if (ownerWorkspaceId && ownerWorkspaceId !== workspaceId) {
      throw new CofferError('invalid_argument', 'owner_workspace_id must be empty or the workspace itself', [{ field: 'owner_workspace_id', reason: 'workspace mismatch' }]);
    }
    return { ownerId, ownerWorkspaceId: workspaceId };
  }

  /**
   * May `ownerId` of `workspaceId` hydrate this version? A version written without an owner
   * (before secrets had owners) stays in its coordinate's workspace; a check/discover one without
   * an owner workspace hydrates for nobody.
   */
  function ownedBy(row: { workspace_id: string; owner_id: string | null; owner_workspace_id: string | null }, workspaceId: string, ownerId: string): boolean {
    const ownerWorkspace = row.owner_workspace_id ?? (row.workspace_id === EPHEMERAL_WORKSPACE_ID ? null : row.workspace_id);
    if (ownerWorkspace !== workspaceId) return false;
    return row.owner_id === null || row.owner_id === ownerId;
  }

  function requireWorkspace(workspaceId: string): void {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(workspaceId)) {
      throw new CofferError('invalid_argument', 'workspace_id must be 1-64 letters, digits or dashes', [
        { field: 'workspace_id', reason: 'invalid' },
      ]);
    }
  }

  async function loadState(base: string): Promise<{ state: SecretState; streamVersion: number }> {
    const { currentVersion, events } = await store.readStream(streamOf(base));
    const state = events.reduce((s, e) => evolve(s, { type: e.type, data: e.data } as unknown as SecretEvent), initialState());
    return { state, streamVersion: currentVersion };
  }

  function writtenMessage(e: AppendedEvent, actor: Actor): OutboxMessage {
    const d = e.data as unknown as SecretVersionWrittenData;
    return integrationEventMessage(
      ns,
      'SecretVersionWritten',
      {
        coordinate: d.coordinate,
        baseCoordinate: d.baseCoordinate,
        version: d.version,
        workspaceId: d.workspaceId,
        actor: actor.subject,
        occurredAt: d.writtenAt,
        kekVersion: d.kekVersion,
      },
      { eventId: e.eventId, source: SOURCE, subject: d.coordinate, time: e.recordedAt, traceparent: actor.traceparent },
    );
  }

  function destroyedMessage(e: AppendedEvent, actor: Actor): OutboxMessage {
    const d = e.data as unknown as SecretVersionDestroyedData;
    return integrationEventMessage(
      ns,
      'SecretVersionDestroyed',
      {
        coordinate: d.coordinate,
        baseCoordinate: d.baseCoordinate,
        version: d.version,
        workspaceId: d.workspaceId,
        actor: actor.subject,
        occurredAt: d.destroyedAt,
      },
      { eventId: e.eventId, source: SOURCE, subject: d.coordinate, time: e.recordedAt, traceparent: actor.traceparent },
    );
  }

  /** Throws the abort reason (the call was cancelled or its deadline passed) when `signal` has aborted. */
  function stopIfAborted(signal: AbortSignal | undefined): void {
    if (!signal?.aborted) return;
    throw isCofferError(signal.reason) ? signal.reason : new CofferError('unavailable', 'the call was cancelled or its deadline passed');
  }

  /**
   * Writes every value as a new version (v1 of a new base, or the next version of a given one), all
   * or nothing, in one transaction of a bounded number of statements. At most `maxSecretsPerRequest`
   * values per call. When `signal` aborts (the caller cancelled or its deadline passed) before the
   * commit, nothing is committed.
   */
  async function writeSecrets(
    workspaceId: string,
    inputs: SecretWriteInput[],
    actor: Actor,
    owner: SecretOwner = {},
    extraMetadata: Record<string, unknown> = {},
    signal?: AbortSignal,
  ): Promise<WrittenSecret[]> {
    requireWorkspace(workspaceId);
    const { ownerId, ownerWorkspaceId } = ownerOfWrite(workspaceId, owner);
    const writeId = requireWriteId(owner.writeId);
    if (inputs.length === 0) throw new CofferError('invalid_argument', 'secrets must not be empty', [{ field: 'secrets', reason: 'empty' }]);
    if (inputs.length > maxSecretsPerRequest) {
      throw new CofferError('invalid_argument', `secrets holds ${inputs.length} values; the limit is ${maxSecretsPerRequest} per request`, [
        { field: 'secrets', reason: 'too many' },
      ]);
    }
    const now = clock();
    const expiryOf = (ttlSeconds: number | undefined, field: string): string | null => {
      const ttl = ttlSeconds ?? 0;
      if (!Number.isInteger(ttl) || ttl < 0 || ttl > MAX_TTL_SECONDS) {
        throw new CofferError('invalid_argument', `${field}.ttl_seconds must be 0 to ${MAX_TTL_SECONDS}`, [{ field: `${field}.ttl_seconds`, reason: 'out of range' }]);
      }
      if (ttl > 0) return new Date(now.getTime() + ttl * 1000).toISOString();
      return workspaceId === EPHEMERAL_WORKSPACE_ID ? new Date(now.getTime() + deps.ephemeralTtlMs).toISOString() : null;
    };
    // Every input is checked before any KMS or database work.
    const seen = new Set<string>();
    const checked = inputs.map((input, i) => {
      const field = `secrets[${i}]`;
      if (Buffer.byteLength(input.value, 'utf8') > MAX_VALUE_BYTES) {
        throw new CofferError('invalid_argument', `${field}.value is larger than ${MAX_VALUE_BYTES} bytes`, [{ field: `${field}.value`, reason: 'too large' }]);
      }
      let base: string;
      let isNew = false;
      if (input.baseCoordinate) {
        const parsed = parseBaseCoordinate(prefix, input.baseCoordinate);
        if (parsed.workspaceId !== workspaceId) {
          throw new CofferError('invalid_argument', `${field}.base_coordinate belongs to another workspace`, [{ field: `${field}.base_coordinate`, reason: 'workspace mismatch' }]);
        }
        base = input.baseCoordinate;
      } else {
        base = baseCoordinate(prefix, workspaceId, newId());
        isNew = true;
      }
      if (seen.has(base)) throw new CofferError('invalid_argument', `${field}.base_coordinate appears twice`, [{ field: `${field}.base_coordinate`, reason: 'duplicate' }]);
      seen.add(base);
      return { input, field, base, isNew, expiresAt: expiryOf(input.ttlSeconds, field) };
    });
    const planned: { base: string; streamVersion: number; events: SecretEvent[]; wrapped: Buffer }[] = [];
    for (const { input, base, isNew, expiresAt } of checked) {
      stopIfAborted(signal);
      // A base this call just made up has no stream yet: nothing to read.
      const { state, streamVersion } = isNew ? { state: initialState(), streamVersion: 0 } : await loadState(base);
      const version = state.latestVersion + 1;
      const coordinate = `${base}_v${version}`;
      const sealed = await seal(kms, input.value, bindingOf(workspaceId, coordinate));
      const events = decide(
        {
          type: 'WriteSecretVersion',
          baseCoordinate: base,
          workspaceId,
          version,
          expectedVersion: input.expectedVersion,
          ciphertext: sealed.ciphertext.toString('base64'),
          dataKeyId: newId(),
          kekId: sealed.dataKey.kekId,
          kekVersion: sealed.dataKey.kekVersion,
          expiresAt,
          ownerId,
          ownerWorkspaceId,
          writeId,
          now: now.toISOString(),
        },
        state,
      );
      planned.push({ base, streamVersion, events, wrapped: sealed.dataKey.wrapped });
    }
    stopIfAborted(signal);
    const metadata = metadataOf(actor, extraMetadata);
    try {
      await db.transaction().execute(async (trx) => {
        // The read model rows first: appends take turns on the workspace's chain lock, which is then
        // held only for the events and the outbox (a few statements), not for this.
        await projectVersionsWritten(
          trx,
          schema,
          planned.map((p) => ({ e: p.events[0]!.data as SecretVersionWrittenData, wrapped: p.wrapped })),
          actor.subject,
          writeBatchSize,
        );
        stopIfAborted(signal);
        await store.appendManyInTransaction(
          trx,
          planned.map((p) => ({ streamId: streamOf(p.base), expected: p.streamVersion, events: p.events.map((e) => ({ type: e.type, data: { ...e.data }, metadata })) })),
          { batchSize: writeBatchSize, outbox: (recorded) => recorded.map((r) => writtenMessage(r, actor)) },
        );
        // Last look before the commit: a caller that gave up must not find its secrets written.
        stopIfAborted(signal);
      });
    } catch (err) {
      // A concurrent writer of the same base took this version first: its row is already there.
      if ((err as { code?: string }).code === '23505') throw new CofferError('version_conflict', 'the secret was changed concurrently; read it again');
      throw err;
    }
    return planned.map((p) => {
      const d = p.events[0]!.data as SecretVersionWrittenData;
      return { coordinate: d.coordinate, baseCoordinate: d.baseCoordinate, version: d.version };
    });
  }

  /** The coordinates a partial config references; one nested too deep is invalid_argument. */
  function referencedCoordinates(partial: unknown): string[] {
    try {
      return secretCoordinates(partial);
    } catch (err) {
      if (err instanceof SecretJsonError) throw new CofferError('invalid_argument', 'partial_config_json is nested too deep', [{ field: 'partial_config_json', reason: 'too deep' }]);
      throw err;
    }
  }

  /** One hydrate call waiting for its batch. */
  interface PendingHydrate {
    workspaceId: string;
    ownerId: string;
    coordinates: string[];
    partial: unknown;
    reason: string;
    actor: Actor;
    resolve(configJson: string): void;
    reject(err: unknown): void;
  }

  /** The plaintext of each coordinate of one call, after its owner and state checks. */
  async function openValues(p: PendingHydrate, rows: Map<string, SecretVersionRow>, now: Date): Promise<Map<string, string>> {
    // Before any other answer: a coordinate is hydrated only into its owner's config. The message names none.
    for (const c of p.coordinates) {
      const row = rows.get(c);
      if (row && !ownedBy(row, p.workspaceId, p.ownerId)) throw new CofferError('permission_denied', 'a coordinate belongs to another actor or workspace');
    }
    const values = new Map<string, string>();
    for (const c of p.coordinates) {
      const row = rows.get(c);
      if (!row) throw new CofferError('not_found', 'a secret the config refers to does not exist');
      if (row.state === 'expired' || (row.expires_at && row.expires_at.getTime() <= now.getTime())) {
        cache.drop(c);
        throw new CofferError('not_found', 'a secret the config refers to expired');
      }
      if (row.state === 'destroyed' || !row.wrapped || row.kek_id === null || row.kek_version === null) {
        cache.drop(c);
        throw new CofferError('not_found', 'a secret the config refers to was deleted');
      }
      const binding = bindingOf(row.workspace_id, c);
      const dek = cache.get(c) ?? (await unwrapFresh({ kekId: row.kek_id, kekVersion: row.kek_version, wrapped: row.wrapped }, binding));
      try {
        values.set(c, openWithKey(dek, row.ciphertext, binding));
        cache.set(c, dek);
      } finally {
        dek.fill(0);
      }
    }
    return values;
  }

  /**
   * A batch of hydrate calls: one read of every version they name, then the checks and decryption of
   * each call on its own (a refused call fails alone); the calls that passed go on to be audited.
   */
  async function hydrateBatch(batch: PendingHydrate[]): Promise<void> {
    let rows: Map<string, SecretVersionRow>;
    try {
      rows = new Map((await findVersions(db, schema, [...new Set(batch.flatMap((p) => p.coordinates))])).map((r) => [r.coordinate, r]));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    const now = clock();
    const opened = await Promise.all(
      batch.map(async (p) => {
        try {
          return { p, values: await openValues(p, rows, now) };
        } catch (err) {
          p.reject(err);
          return undefined;
        }
      }),
    );
    for (const o of opened) if (o) auditGroups.submit(o);
  }

  /**
   * The integration events of one audit append: its hydrates listed in `SecretsHydratedBatch`
   * messages of at most {@link HYDRATED_BATCH_MAX_BYTES} each (one message for a batch of ordinary
   * configs), so the relay publishes once per batch rather than once per hydrate.
   */
  function hydrationMessages(appended: AppendedEvent[]): OutboxMessage[] {
    const messages: OutboxMessage[] = [];
    let entries: SecretsHydratedEntry[] = [];
    let bytes = 0;
    const flush = () => {
      if (entries.length === 0) return;
      messages.push(integrationEventMessage(ns, 'SecretsHydratedBatch', { hydrations: entries }, { eventId: randomUUID(), source: SOURCE, time: appended[0]!.recordedAt }));
      entries = [];
      bytes = 0;
    };
    for (const e of appended) {
      const d = e.data as { workspaceId: string; coordinates: string[]; reason: string; hydratedAt: string };
      const m = e.metadata as { actor?: string };
      const entry = { workspaceId: d.workspaceId, coordinates: d.coordinates, actor: m.actor ?? '', reason: d.reason, occurredAt: d.hydratedAt, eventId: e.eventId };
      const size = Buffer.byteLength(JSON.stringify(entry));
      if (bytes + size > HYDRATED_BATCH_MAX_BYTES) flush();
      entries.push(entry);
      bytes += size;
    }
    flush();
    return messages;
  }

  /**
   * The audit events of hydrates that passed their checks, one append per batch. One batch at a time
   * per process, so two batches never race for a workspace's audit stream; a call's plaintext is
   * returned only after its event committed.
   */
  async function auditBatch(ready: { p: PendingHydrate; values: Map<string, string> }[]): Promise<void> {
    const hydratedAt = clock().toISOString();
    try {
      await store.appendToOwnChains(
        ready.map(({ p }) => ({
          streamId: `${HYDRATIONS}${p.workspaceId}`,
          events: [{ type: 'SecretsHydrated', data: { workspaceId: p.workspaceId, coordinates: p.coordinates, reason: p.reason, hydratedAt }, metadata: metadataOf(p.actor) }],
        })),
        { outbox: hydrationMessages },
      );
    } catch (err) {
      for (const { p, values } of ready) {
        values.clear();
        p.reject(err);
      }
      return;
    }
    for (const { p, values } of ready) {
      hydrations(p.workspaceId, p.coordinates.length);
      p.resolve(JSON.stringify(hydrate(p.partial, (c) => values.get(c)!)));
    }
  }

  // Up to 100 audit events: the event store's one-statement append.
  const auditGroups = createGroupCommit(auditBatch, { maxBatch: 100, maxInFlight: 1 });
  const hydrateGroups = createGroupCommit(hydrateBatch, { maxBatch: deps.hydrateBatchSize ?? DEFAULT_HYDRATE_BATCH, maxInFlight: 2 });

  /** Replaces every `{"_secret": coordinate}` of a partial config with its value; the hydrate is audited first. */
  async function hydrateConfig(workspaceId: string, partialConfigJson: string, reason: string, actor: Actor, ownerId = ''): Promise<string> {
    requireWorkspace(workspaceId);
    if (ownerId) requireOwnerId(ownerId, true);
    let partial: unknown;
    try {
      partial = JSON.parse(partialConfigJson);
    } catch {
      throw new CofferError('invalid_argument', 'partial_config_json is not valid JSON', [{ field: 'partial_config_json', reason: 'invalid JSON' }]);
    }
    const coordinates = [...new Set(referencedCoordinates(partial))];
    if (coordinates.length > MAX_COORDINATES_PER_HYDRATE) {
      throw new CofferError('invalid_argument', `partial_config_json references ${coordinates.length} secrets; the limit is ${MAX_COORDINATES_PER_HYDRATE}`, [
        { field: 'partial_config_json', reason: 'too many secrets' },
      ]);
    }
    for (const c of coordinates) {
      const parsed = parseCoordinate(prefix, c);
      if (parsed.workspaceId !== workspaceId && parsed.workspaceId !== EPHEMERAL_WORKSPACE_ID) {
        throw new CofferError('permission_denied', 'a coordinate belongs to another workspace');
      }
    }
    return new Promise<string>((resolve, reject) => hydrateGroups.submit({ workspaceId, ownerId, coordinates, partial, reason, actor, resolve, reject }));
  }

  /**
   * Destroys the data keys of full coordinates (one version) or bases (every version), all or
   * nothing. A base bound to another owner than `ownerId` is left untouched (null: any owner, for
   * the whole-workspace sweep only).
   */
  async function deleteSecrets(workspaceId: string, coordinates: string[], actor: Actor, ownerId: string | null = '', writeIdInput?: string): Promise<string[]> {
    requireWorkspace(workspaceId);
    if (ownerId) requireOwnerId(ownerId, true);
    const writeId = requireWriteId(writeIdInput);
    const byBase = new Map<string, number[] | 'all'>();
    for (const [i, c] of coordinates.entries()) {
      const full = /_v[1-9][0-9]*$/.test(c);
      if (writeId && !full) {
        throw new CofferError('invalid_argument', `coordinates[${i}] must be a full coordinate when write_id is given`, [{ field: `coordinates[${i}]`, reason: 'base with write_id' }]);
      }
      const parsed = full ? parseCoordinate(prefix, c) : { ...parseBaseCoordinate(prefix, c), version: 0 };
      if (parsed.workspaceId !== workspaceId) {
        throw new CofferError('invalid_argument', `coordinates[${i}] belongs to another workspace`, [{ field: `coordinates[${i}]`, reason: 'workspace mismatch' }]);
      }
      const prior = byBase.get(parsed.base);
      if (!full || prior === 'all') byBase.set(parsed.base, 'all');
      else byBase.set(parsed.base, [...(prior ?? []), parsed.version]);
    }
    if (writeId) {
      // Only what that write made: a retry may have written the same version numbers, and those stay.
      const mine = new Set(await writtenBy(db, schema, coordinates, writeId));
      for (const [base, versions] of byBase) {
        const kept = (versions as number[]).filter((v) => mine.has(`${base}_v${v}`));
        if (kept.length === 0) byBase.delete(base);
        else byBase.set(base, kept);
      }
      if (byBase.size === 0) return [];
    }
    const now = clock().toISOString();
    // A concurrent writer, expiry or delete of the same base moves its stream on: read it again and
    // decide again. What another call destroyed meanwhile is then no longer active and is skipped, so
    // a repeated or concurrent delete of the same version succeeds instead of conflicting.
    for (let attempt = 1; ; attempt++) {
      try {
        return await destroyOnce(workspaceId, byBase, actor, ownerId, now);
      } catch (err) {
        if (!(isCofferError(err) && err.code === 'version_conflict') || attempt >= DELETE_ATTEMPTS) throw err;
      }
    }
  }

  /** One all-or-nothing pass of {@link deleteSecrets}, each base appended at the version it was read at. */
  async function destroyOnce(workspaceId: string, byBase: Map<string, number[] | 'all'>, actor: Actor, ownerId: string | null, now: string): Promise<string[]> {
    const planned: { base: string; streamVersion: number; events: SecretEvent[] }[] = [];
    for (const [base, versions] of byBase) {
      const { state, streamVersion } = await loadState(base);
      if (ownerId !== null && state.ownerId !== null && state.ownerId !== ownerId) continue;
      const events = decide({ type: 'DestroySecretVersions', workspaceId, versions, reason: 'deleted', now }, state);
      planned.push({ base, streamVersion, events });
    }
    const destroyed: string[] = [];
    await db.transaction().execute(async (trx) => {
      for (const p of planned) {
        if (p.events.length === 0) continue;
        await store.appendInTransaction(
          trx,
          streamOf(p.base),
          p.streamVersion,
          p.events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: metadataOf(actor) })),
          {
            project: async (t, recorded) => {
              for (const r of recorded) await projectVersionDestroyed(t, schema, r.data as unknown as SecretVersionDestroyedData);
            },
            outbox: (recorded) => recorded.map((r) => destroyedMessage(r, actor)),
          },
        );
        destroyed.push(...p.events.map((e) => (e.data as SecretVersionDestroyedData).coordinate));
      }
    });
    for (const c of destroyed) cache.drop(c);
    return destroyed;
  }

  /**
   * The highest version ever written of each base of the workspace (0: never written), in the order
   * asked: a writer plans the next version from it, so a version a lost write already took is never
   * planned again.
   */
  async function latestVersions(workspaceId: string, bases: string[]): Promise<{ baseCoordinate: string; version: number }[]> {
    requireWorkspace(workspaceId);
    if (bases.length > MAX_LATEST_BASES) {
      throw new CofferError('invalid_argument', `base_coordinates holds ${bases.length} entries; the limit is ${MAX_LATEST_BASES}`, [{ field: 'base_coordinates', reason: 'too many' }]);
    }
    for (const [i, base] of bases.entries()) {
      let parsed: { workspaceId: string };
      try {
        parsed = parseBaseCoordinate(prefix, base);
      } catch (err) {
        if (!isCofferError(err)) throw err;
        throw new CofferError('invalid_argument', `base_coordinates[${i}] is ${err.message}`, [{ field: `base_coordinates[${i}]`, reason: 'invalid' }]);
      }
      if (parsed.workspaceId !== workspaceId) {
        throw new CofferError('invalid_argument', `base_coordinates[${i}] belongs to another workspace`, [{ field: `base_coordinates[${i}]`, reason: 'workspace mismatch' }]);
      }
    }
    const latest = await findLatestVersions(db, schema, [...new Set(bases)]);
    return bases.map((baseCoordinate) => ({ baseCoordinate, version: latest.get(baseCoordinate) ?? 0 }));
  }

  /** Metadata of every version of a base coordinate; never a value. */
  async function listSecretVersions(workspaceId: string, base: string): Promise<VersionInfo[]> {
    requireWorkspace(workspaceId);
    const parsed = parseBaseCoordinate(prefix, base);
    if (parsed.workspaceId !== workspaceId) throw new CofferError('not_found', 'no such secret in this workspace');
    const now = clock().getTime();
    const rows = await listVersions(db, schema, base);
    if (rows.length === 0) throw new CofferError('not_found', 'no such secret');
    return rows.map((r) => ({
      coordinate: r.coordinate,
      version: r.version,
      state: r.state !== 'active' ? r.state : r.expires_at && r.expires_at.getTime() <= now ? 'expired' : 'active',
      createdAt: r.created_at.toISOString(),
      createdBy: r.created_by,
      kekVersion: r.kek_version ?? 0,
    }));
  }

  /** Unwraps at the KMS; a KEK version this process has not seen yet (a rotation elsewhere) triggers one refresh. */
  async function unwrapFresh(key: WrappedKey, binding: string): Promise<Buffer> {
    try {
      return await kms.unwrap(key, binding);
    } catch (err) {
      if (!kms.refresh || !isCofferError(err) || err.code !== 'failed_precondition') throw err;
      await kms.refresh();
      return kms.unwrap(key, binding);
    }
  }

  function expiredMessage(e: AppendedEvent, actor: Actor): OutboxMessage {
    const d = e.data as unknown as SecretExpiredData;
    return integrationEventMessage(
      ns,
      'SecretExpired',
      { coordinate: d.coordinate, baseCoordinate: d.baseCoordinate, version: d.version, workspaceId: d.workspaceId, occurredAt: d.expiredAt },
      { eventId: e.eventId, source: SOURCE, subject: d.coordinate, time: e.recordedAt, traceparent: actor.traceparent },
    );
  }

  /** Shreds every active version whose expiry has passed (up to `limit`), appending SecretExpired; returns how many. */
  async function expireDue(limit = 500): Promise<number> {
    const now = clock();
    const due = await findDueForExpiry(db, schema, now, limit);
    const byBase = new Map<string, { workspaceId: string; versions: number[] }>();
    for (const d of due) {
      const entry = byBase.get(d.base_coordinate) ?? { workspaceId: d.workspace_id, versions: [] };
      entry.versions.push(Number(d.version));
      byBase.set(d.base_coordinate, entry);
    }
    const sweeper: Actor = { subject: 'secrets-expiry-sweeper' };
    let expired = 0;
    for (const [base, { workspaceId, versions }] of byBase) {
      const { state, streamVersion } = await loadState(base);
      const events = decide({ type: 'ExpireSecretVersions', workspaceId, versions, now: now.toISOString() }, state);
      if (events.length === 0) continue;
      try {
        await store.append(streamOf(base), streamVersion, events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: metadataOf(sweeper) })), {
          project: async (trx, recorded) => {
            for (const r of recorded) await projectExpired(trx, schema, r.data as unknown as SecretExpiredData);
          },
          outbox: (recorded) => recorded.map((r) => expiredMessage(r, sweeper)),
        });
      } catch (err) {
        // A write to the same secret won the race; the next sweep sees the new state.
        if (isCofferError(err) && err.code === 'version_conflict') continue;
        throw err;
      }
      for (const e of events) cache.drop((e.data as SecretExpiredData).coordinate);
      expired += events.length;
    }
    return expired;
  }

  /** Destroys every version of every secret of a workspace; returns how many versions were destroyed. */
  async function deleteWorkspaceSecrets(workspaceId: string, actor: Actor): Promise<number> {
    requireWorkspace(workspaceId);
    let destroyed = 0;
    for (;;) {
      const bases = (await findLiveBases(db, schema, workspaceId)).slice(0, 100);
      if (bases.length === 0) return destroyed;
      destroyed += (await deleteSecrets(workspaceId, bases, actor, null)).length;
    }
  }

  /**
   * Writes the value of an earlier, still active version as the next version of its base. With
   * `ownerId`, the base must be that owner's; `writeId` is kept with the version it writes.
   */
  async function rollbackSecret(
    workspaceId: string,
    base: string,
    toVersion: number,
    expectedVersion: number,
    actor: Actor,
    options: { ownerId?: string; writeId?: string } = {},
  ): Promise<WrittenSecret> {
    requireWorkspace(workspaceId);
    const parsed = parseBaseCoordinate(prefix, base);
    if (parsed.workspaceId !== workspaceId) throw new CofferError('not_found', 'no such secret in this workspace');
    if (!Number.isInteger(toVersion) || toVersion < 1) throw new CofferError('invalid_argument', 'to_version must be a positive integer', [{ field: 'to_version', reason: 'invalid' }]);
    const source = `${base}_v${toVersion}`;
    const partial = JSON.stringify({ value: { _secret: source } });
    // A rollback stays with the base's own owner.
    const { state } = await loadState(base);
    if (options.ownerId && requireOwnerId(options.ownerId, true) !== (state.ownerId ?? '')) {
      throw new CofferError('permission_denied', 'a coordinate belongs to another actor or workspace');
    }
    const owner = { ownerId: state.ownerId ?? '', ownerWorkspaceId: state.ownerWorkspaceId ?? '', writeId: options.writeId || undefined };
    const hydrated = JSON.parse(await hydrateConfig(workspaceId, partial, `rollback of ${base} to v${toVersion}`, actor, owner.ownerId)) as { value: string };
    const [written] = await writeSecrets(workspaceId, [{ baseCoordinate: base, expectedVersion, value: hydrated.value }], actor, owner, { rolledBackFrom: toVersion });
    return written!;
  }

  function rewrappedMessage(e: AppendedEvent, actor: Actor): OutboxMessage {
    const d = e.data as unknown as DataKeyRewrappedData;
    return integrationEventMessage(
      ns,
      'DataKeyRewrapped',
      { coordinate: d.coordinate, version: d.version, workspaceId: d.workspaceId, fromKekVersion: d.fromKekVersion, toKekVersion: d.toKekVersion, actor: actor.subject, occurredAt: d.rewrappedAt },
      { eventId: e.eventId, source: SOURCE, subject: d.coordinate, time: e.recordedAt, traceparent: actor.traceparent },
    );
  }

  async function recordKekEvent(type: 'KeyEncryptionKeyRotated' | 'KeyEncryptionKeyRetired', version: number, actor: Actor): Promise<void> {
    const occurredAt = clock().toISOString();
    await store.append(`kek-${kms.kekId}`, 'any', [{ type, data: { kekId: kms.kekId, provider: kms.provider, kekVersion: version, occurredAt }, metadata: metadataOf(actor) }], {
      project: (trx) => observeKekVersion(trx, schema, kms.kekId, version, type === 'KeyEncryptionKeyRotated' ? 'primary' : 'retired', clock()),
      outbox: (recorded) =>
        recorded.map((r) =>
          integrationEventMessage(ns, type, { kekId: kms.kekId, kekVersion: version, actor: actor.subject, occurredAt }, { eventId: r.eventId, source: SOURCE, subject: kms.kekId, time: r.recordedAt, traceparent: actor.traceparent }),
        ),
    });
  }

  /**
   * Re-wraps every live data key not yet under the primary KEK version, one secret version per
   * transaction (DataKeyRewrapped), so a crash half-way loses nothing: running it again resumes.
   * Values are never decrypted; only the data key passes through memory.
   */
  async function rewrapAll(actor: Actor): Promise<number> {
    const primary = kms.primaryVersion();
    const skip: string[] = [];
    let rewrapped = 0;
    for (;;) {
      const batch = await findStaleDataKeys(db, schema, kms.kekId, primary, REWRAP_BATCH, skip);
      if (batch.length === 0) return rewrapped;
      for (const key of batch) {
        const binding = bindingOf(key.workspace_id, key.coordinate);
        const { state, streamVersion } = await loadState(key.base_coordinate);
        const events = decide(
          { type: 'RewrapDataKey', workspaceId: key.workspace_id, version: Number(key.version), fromKekVersion: Number(key.kek_version), toKekVersion: primary, now: clock().toISOString() },
          state,
        );
        if (events.length === 0) {
          skip.push(key.coordinate);
          continue;
        }
        const dek = await unwrapFresh({ kekId: kms.kekId, kekVersion: Number(key.kek_version), wrapped: key.wrapped }, binding);
        let wrapped: WrappedKey;
        try {
          wrapped = await kms.wrap(dek, binding);
        } finally {
          dek.fill(0);
        }
        try {
          await store.append(streamOf(key.base_coordinate), streamVersion, events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: metadataOf(actor) })), {
            project: async (trx, recorded) => {
              for (const r of recorded) await projectRewrapped(trx, schema, r.data as unknown as DataKeyRewrappedData, wrapped.wrapped);
            },
            outbox: (recorded) => recorded.map((r) => rewrappedMessage(r, actor)),
          });
          rewrapped++;
        } catch (err) {
          // A concurrent write or delete of this secret: it is picked up again by the next batch.
          if (!(isCofferError(err) && err.code === 'version_conflict') && !(err instanceof Error && err.message === 'data key changed during re-wrap')) throw err;
        }
        cache.drop(key.coordinate);
      }
    }
  }

  /** Creates a new KEK version (unless resuming) and re-wraps every live data key under it. */
  async function rotateKek(resumeOnly: boolean, actor: Actor): Promise<{ kekVersion: number; rewrapped: number }> {
    if (!resumeOnly) {
      const version = await kms.createVersion();
      await recordKekEvent('KeyEncryptionKeyRotated', version, actor);
    } else if (kms.refresh) {
      await kms.refresh();
    }
    const rewrapped = await rewrapAll(actor);
    return { kekVersion: kms.primaryVersion(), rewrapped };
  }

  /** Destroys a KEK version once no data key is wrapped by it. */
  async function retireKek(version: number, actor: Actor): Promise<void> {
    await kms.refresh?.();
    if (version === kms.primaryVersion()) throw new CofferError('failed_precondition', 'the primary KEK version cannot be retired; rotate first');
    const counts = await countDataKeysByKekVersion(db, schema, kms.kekId);
    const still = counts.get(version) ?? 0;
    if (still > 0) {
      throw new CofferError('failed_precondition', `${still} data keys are still wrapped by KEK version ${version}; resume the rotation first`);
    }
    await kms.retireVersion(version);
    cache.clear();
    await recordKekEvent('KeyEncryptionKeyRetired', version, actor);
  }

  /** Every KEK version with its state and how many live data keys it wraps. */
  async function listKekVersions(): Promise<{ provider: string; kekId: string; versions: { kekVersion: number; state: string; dataKeys: number }[] }> {
    await kms.refresh?.();
    const counts = await countDataKeysByKekVersion(db, schema, kms.kekId);
    const versions = (await kms.versions()).map((v) => ({ kekVersion: v.version, state: v.state, dataKeys: counts.get(v.version) ?? 0 }));
    return { provider: kms.provider, kekId: kms.kekId, versions };
  }

  /** Rotates when the primary KEK version is older than the rotation period; otherwise resumes an unfinished re-wrap. */
  async function rotateIfDue(actor: Actor): Promise<'rotated' | 'resumed' | 'not due'> {
    const since = await observeKekVersion(db, schema, kms.kekId, kms.primaryVersion(), 'primary', clock());
    if (clock().getTime() - since.getTime() >= deps.rotationPeriodMs) {
      await rotateKek(false, actor);
      return 'rotated';
    }
    return (await rewrapAll(actor)) > 0 ? 'resumed' : 'not due';
  }

  return {
    writeSecrets,
    hydrateConfig,
    deleteSecrets,
    listSecretVersions,
    latestVersions,
    expireDue,
    deleteWorkspaceSecrets,
    rollbackSecret,
    rotateKek,
    retireKek,
    listKekVersions,
    rotateIfDue,
  };
}

/** The secrets use cases, as composed by main.ts. */
export type SecretsService = ReturnType<typeof createSecretsService>;

/** The service as its configuration describes it: what main.ts and the rotate-kek command share. */
export function secretsServiceFromConfig(
  config: SecretsConfig,
  parts: { db: Kysely<SecretsDatabase>; store: EventStore<SecretsDatabase>; kms: KeyManagementService; cacheEntries?: number },
): SecretsService {
  return createSecretsService({
    ...parts,
    schema: config.SECRETS_DB_SCHEMA,
    coordinatePrefix: config.COFFER_COORDINATE_PREFIX,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    ephemeralTtlMs: config.SECRETS_EPHEMERAL_TTL_SECONDS * 1000,
    cache: createDataKeyCache({
      maxEntries: parts.cacheEntries ?? config.SECRETS_DATA_KEY_CACHE_ENTRIES,
      ttlMs: config.SECRETS_DATA_KEY_CACHE_TTL_SECONDS * 1000,
      clock: Date.now,
    }),
    rotationPeriodMs: config.SECRETS_KEK_ROTATION_DAYS * 24 * 3600 * 1000,
    maxSecretsPerRequest: config.SECRETS_MAX_SECRETS_PER_REQUEST,
    clock: () => new Date(),
    newId: randomUUID,
  });
}
