import type { Kysely } from 'kysely';
import {
  CofferError,
  EPHEMERAL_WORKSPACE_ID,
  baseCoordinate,
  parseBaseCoordinate,
  parseCoordinate,
  type MessagingNamespace,
} from '@coffer/contracts';
import type { EventStore, OutboxMessage, RecordedEvent } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import { hydrate, secretCoordinates } from '@coffer/secret-json';
import {
  decide,
  evolve,
  initialState,
  type SecretEvent,
  type SecretState,
  type SecretVersionDestroyedData,
  type SecretVersionWrittenData,
} from './domain/secret.decider';
import { bindingOf, openWithKey, seal } from './envelope';
import type { KeyManagementService } from './kms/kms';
import { findVersions, listVersions, projectVersionDestroyed, projectVersionWritten } from './secrets.postgres';

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
  db: Kysely<any>;
  store: EventStore;
  kms: KeyManagementService;
  schema: string;
  coordinatePrefix: string;
  namespace: MessagingNamespace;
  ephemeralTtlMs: number;
  clock: () => Date;
  newId: () => string;
}

const MAX_VALUE_BYTES = 64 * 1024;
const SOURCE = 'coffer/secrets';
const streamOf = (base: string) => `secret-${base}`;

/** The secrets service's use cases: write, hydrate, delete and list, over the event store and the KMS. */
export function createSecretsService(deps: SecretsServiceDeps) {
  const { db, store, kms, schema, coordinatePrefix: prefix, namespace: ns, clock, newId } = deps;

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

  function writtenMessage(e: RecordedEvent, actor: Actor): OutboxMessage {
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

  function destroyedMessage(e: RecordedEvent, actor: Actor): OutboxMessage {
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

  /** Writes every value as a new version (v1 of a new base, or the next version of a given one), all or nothing. */
  async function writeSecrets(workspaceId: string, inputs: SecretWriteInput[], actor: Actor): Promise<WrittenSecret[]> {
    requireWorkspace(workspaceId);
    if (inputs.length === 0) throw new CofferError('invalid_argument', 'secrets must not be empty', [{ field: 'secrets', reason: 'empty' }]);
    const now = clock();
    const expiresAt = workspaceId === EPHEMERAL_WORKSPACE_ID ? new Date(now.getTime() + deps.ephemeralTtlMs).toISOString() : null;
    const seen = new Set<string>();
    const planned: { base: string; streamVersion: number; events: SecretEvent[]; wrapped: Buffer }[] = [];
    for (const [i, input] of inputs.entries()) {
      const field = `secrets[${i}]`;
      if (Buffer.byteLength(input.value, 'utf8') > MAX_VALUE_BYTES) {
        throw new CofferError('invalid_argument', `${field}.value is larger than ${MAX_VALUE_BYTES} bytes`, [{ field: `${field}.value`, reason: 'too large' }]);
      }
      let base: string;
      if (input.baseCoordinate) {
        const parsed = parseBaseCoordinate(prefix, input.baseCoordinate);
        if (parsed.workspaceId !== workspaceId) {
          throw new CofferError('invalid_argument', `${field}.base_coordinate belongs to another workspace`, [{ field: `${field}.base_coordinate`, reason: 'workspace mismatch' }]);
        }
        base = input.baseCoordinate;
      } else {
        base = baseCoordinate(prefix, workspaceId, newId());
      }
      if (seen.has(base)) throw new CofferError('invalid_argument', `${field}.base_coordinate appears twice`, [{ field: `${field}.base_coordinate`, reason: 'duplicate' }]);
      seen.add(base);
      const { state, streamVersion } = await loadState(base);
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
          now: now.toISOString(),
        },
        state,
      );
      planned.push({ base, streamVersion, events, wrapped: sealed.dataKey.wrapped });
    }
    await db.transaction().execute(async (trx) => {
      for (const p of planned) {
        await store.appendInTransaction(
          trx,
          streamOf(p.base),
          p.streamVersion,
          p.events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: { actor: actor.subject, onBehalfOf: actor.onBehalfOf, traceparent: actor.traceparent } })),
          {
            project: async (t, recorded) => {
              for (const r of recorded) {
                await projectVersionWritten(t, schema, r.data as unknown as SecretVersionWrittenData, p.wrapped, actor.subject);
              }
            },
            outbox: (recorded) => recorded.map((r) => writtenMessage(r, actor)),
          },
        );
      }
    });
    return planned.map((p) => {
      const d = p.events[0]!.data as SecretVersionWrittenData;
      return { coordinate: d.coordinate, baseCoordinate: d.baseCoordinate, version: d.version };
    });
  }

  /** Replaces every `{"_secret": coordinate}` of a partial config with its value; the hydrate is audited first. */
  async function hydrateConfig(workspaceId: string, partialConfigJson: string, reason: string, actor: Actor): Promise<string> {
    requireWorkspace(workspaceId);
    let partial: unknown;
    try {
      partial = JSON.parse(partialConfigJson);
    } catch {
      throw new CofferError('invalid_argument', 'partial_config_json is not valid JSON', [{ field: 'partial_config_json', reason: 'invalid JSON' }]);
    }
    const coordinates = [...new Set(secretCoordinates(partial))];
    for (const c of coordinates) {
      const parsed = parseCoordinate(prefix, c);
      if (parsed.workspaceId !== workspaceId && parsed.workspaceId !== EPHEMERAL_WORKSPACE_ID) {
        throw new CofferError('permission_denied', 'a coordinate belongs to another workspace');
      }
    }
    const rows = new Map((await findVersions(db, schema, coordinates)).map((r) => [r.coordinate, r]));
    const now = clock();
    const values = new Map<string, string>();
    for (const c of coordinates) {
      const row = rows.get(c);
      if (!row) throw new CofferError('not_found', `secret ${c} does not exist`);
      if (row.state === 'destroyed' || !row.wrapped || row.kek_id === null || row.kek_version === null) {
        throw new CofferError('not_found', `secret ${c} was deleted`);
      }
      if (row.expires_at && row.expires_at.getTime() <= now.getTime()) throw new CofferError('not_found', `secret ${c} expired`);
      const binding = bindingOf(row.workspace_id, c);
      const dek = await kms.unwrap({ kekId: row.kek_id, kekVersion: row.kek_version, wrapped: row.wrapped }, binding);
      try {
        values.set(c, openWithKey(dek, row.ciphertext, binding));
      } finally {
        dek.fill(0);
      }
    }
    const occurredAt = now.toISOString();
    await store.append(
      `hydrations-${workspaceId}`,
      'any',
      [{ type: 'SecretsHydrated', data: { workspaceId, coordinates, reason, hydratedAt: occurredAt }, metadata: { actor: actor.subject, onBehalfOf: actor.onBehalfOf, traceparent: actor.traceparent } }],
      {
        outbox: (recorded) =>
          recorded.map((r) =>
            integrationEventMessage(
              ns,
              'SecretsHydrated',
              { workspaceId, coordinates, actor: actor.subject, reason, occurredAt },
              { eventId: r.eventId, source: SOURCE, subject: workspaceId, time: r.recordedAt, traceparent: actor.traceparent },
            ),
          ),
      },
    );
    return JSON.stringify(hydrate(partial, (c) => values.get(c)!));
  }

  /** Destroys the data keys of full coordinates (one version) or bases (every version), all or nothing. */
  async function deleteSecrets(workspaceId: string, coordinates: string[], actor: Actor): Promise<string[]> {
    requireWorkspace(workspaceId);
    const byBase = new Map<string, number[] | 'all'>();
    for (const [i, c] of coordinates.entries()) {
      const full = /_v[1-9][0-9]*$/.test(c);
      const parsed = full ? parseCoordinate(prefix, c) : { ...parseBaseCoordinate(prefix, c), version: 0 };
      if (parsed.workspaceId !== workspaceId) {
        throw new CofferError('invalid_argument', `coordinates[${i}] belongs to another workspace`, [{ field: `coordinates[${i}]`, reason: 'workspace mismatch' }]);
      }
      const prior = byBase.get(parsed.base);
      if (!full || prior === 'all') byBase.set(parsed.base, 'all');
      else byBase.set(parsed.base, [...(prior ?? []), parsed.version]);
    }
    const now = clock().toISOString();
    const planned: { base: string; streamVersion: number; events: SecretEvent[] }[] = [];
    for (const [base, versions] of byBase) {
      const { state, streamVersion } = await loadState(base);
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
          p.events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: { actor: actor.subject, onBehalfOf: actor.onBehalfOf, traceparent: actor.traceparent } })),
          {
            project: async (t, recorded) => {
              for (const r of recorded) await projectVersionDestroyed(t, schema, r.data as unknown as SecretVersionDestroyedData);
            },
            outbox: (recorded) => recorded.map((r) => destroyedMessage(r, actor)),
          },
        );
        destroyed.push(...p.events.map((e) => e.data.coordinate));
      }
    });
    return destroyed;
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
      state: r.state === 'destroyed' ? 'destroyed' : r.expires_at && r.expires_at.getTime() <= now ? 'expired' : 'active',
      createdAt: r.created_at.toISOString(),
      createdBy: r.created_by,
      kekVersion: r.kek_version ?? 0,
    }));
  }

  return { writeSecrets, hydrateConfig, deleteSecrets, listSecretVersions };
}

/** The secrets use cases, as composed by main.ts. */
export type SecretsService = ReturnType<typeof createSecretsService>;
