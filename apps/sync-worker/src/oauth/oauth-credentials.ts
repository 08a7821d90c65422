import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { isCofferError, type IntegrationEventMessage, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import type { EventStore } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import type { Logger, Redactor } from '@coffer/telemetry';
import { ConnectorError, parseObject } from '../connectors/connector';
import type { EgressPolicy } from '../connectors/egress-policy';
import { InvalidGrantError, refreshAccessToken, revokeRefreshToken, type OAuthDeclaration, type TokenResponse } from './token-endpoint';
import type { SyncDatabase } from '../sync.database';

/** The OAuth credential needs the user to authorize again; no retry can fix the job. */
export class CredentialNeedsReauthorizationError extends ConnectorError {
  constructor() {
    super('the OAuth grant was refused by the provider (invalid_grant): the credential needs reauthorization');
    this.name = 'CredentialNeedsReauthorizationError';
  }
}

/** A refresh failed for a reason a later attempt may not meet (the provider down, a timeout). */
export class CredentialRefreshError extends ConnectorError {
  constructor(message: string) {
    super(message);
    this.name = 'CredentialRefreshError';
  }
}

/** What the credential keeper needs from secrets. */
export interface CredentialPorts {
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
  /** Writes each value as the next version of its base, refused (version_conflict) unless the base is at `expectedVersion`. */
  writeSecrets(workspaceId: string, ownerId: string, writes: { baseCoordinate: string; expectedVersion: number; value: string }[]): Promise<{ coordinate: string; version: number }[]>;
}

export interface OAuthCredentialsDeps {
  db: Kysely<SyncDatabase>;
  store: EventStore<SyncDatabase>;
  schema: string;
  namespace: MessagingNamespace;
  ports: CredentialPorts;
  egress: EgressPolicy;
  redactor: Redactor;
  logger: Logger;
  clock: () => Date;
  /** How long a refresh lease lasts before another replica may take it (default 30 s). */
  leaseMs?: number;
  /** Refresh this long before the expiry (default 60 s). */
  skewMs?: number;
  /** How long to wait for another replica's refresh (default 60 s). */
  waitMs?: number;
  /** Attempts at the revocation endpoint, and the first wait between them (doubled each time, 60 s at most); default 6 and 1 s. */
  revocation?: { attempts: number; backoffMs: number };
}

/** An OAuth actor of a sync plan. */
export interface OAuthActor {
  actorId: string;
  workspaceId: string;
  partial: Record<string, unknown>;
  oauth: OAuthDeclaration;
}

const FIELDS = ['client_id', 'client_secret', 'refresh_token', 'access_token', 'token_expiry_date'] as const;
type Field = (typeof FIELDS)[number];
type Coordinates = Partial<Record<Field, string>>;

function split(coordinate: string): { base: string; version: number } {
  const at = coordinate.lastIndexOf('_v');
  return { base: coordinate.slice(0, at), version: Number(coordinate.slice(at + 2)) };
}

/**
 * Keeps OAuth 2.0 credentials fresh. The newest coordinates of each credential (the ones this
 * worker wrote, unless config has since written a newer version of the same base) and their expiry
 * live in `oauth_credentials`; a refresh holds that row's lease, so one replica at a time refreshes a
 * credential and the others wait and then use what it stored. A refused grant is remembered with
 * the refresh token's coordinate: later runs fail at once, without asking the provider again,
 * until a new refresh token is stored.
 */
export function createOAuthCredentials(deps: OAuthCredentialsDeps) {
  const { db, store, schema, namespace: ns, ports, egress, redactor, logger, clock } = deps;
  const leaseMs = deps.leaseMs ?? 30_000;
  const skewMs = deps.skewMs ?? 60_000;
  const waitMs = deps.waitMs ?? 60_000;
  const table = sql.id(schema, 'oauth_credentials');

  async function readRow(actorId: string) {
    const r = await sql<{ coordinates: Coordinates; expires_at: Date | null; refused_refresh_coordinate: string | null }>`
      select coordinates, expires_at, refused_refresh_coordinate from ${table} where actor_id = ${actorId}`.execute(db);
    return r.rows[0];
  }

  /** The coordinates to use: config's, unless this worker stored a newer version of the same base. */
  function current(partial: Record<string, unknown>, stored: Coordinates | undefined): Coordinates {
    const out: Coordinates = {};
    for (const f of FIELDS) {
      const ref = partial[f] as { _secret?: unknown } | undefined;
      if (!ref || typeof ref._secret !== 'string') throw new ConnectorError(`the OAuth credential field ${f} is not a stored secret`);
      const mine = stored?.[f];
      out[f] = mine && split(mine).base === split(ref._secret).base && split(mine).version > split(ref._secret).version ? mine : ref._secret;
    }
    return out;
  }

  async function publish<N extends IntegrationEventName>(name: N, actorId: string, message: IntegrationEventMessage<N>, traceparent?: string) {
    await store.append(`credential-${actorId}`, 'any', [{ type: name, data: { ...(message as Record<string, unknown>) }, metadata: { actor: 'sync-worker', traceparent } }], {
      outbox: (recorded) => recorded.map((r) => integrationEventMessage(ns, name, message, { eventId: r.eventId, source: 'coffer/sync-worker', subject: actorId, time: r.recordedAt, traceparent })),
    });
  }

  async function tryLease(actor: OAuthActor, holder: string): Promise<boolean> {
    const r = await sql`
      insert into ${table} (actor_id, workspace_id, lease_holder, lease_until)
      values (${actor.actorId}, ${actor.workspaceId}, ${holder}, now() + make_interval(secs => ${leaseMs / 1000}))
      on conflict (actor_id) do update set lease_holder = excluded.lease_holder, lease_until = excluded.lease_until
      where ${table}.lease_holder is null or ${table}.lease_until < now()
      returning 1`.execute(db);
    return r.rows.length > 0;
  }

  async function release(actorId: string, holder: string): Promise<void> {
    await sql`update ${table} set lease_holder = null, lease_until = null where actor_id = ${actorId} and lease_holder = ${holder}`.execute(db);
  }

  async function hydrateWith(actor: OAuthActor, coordinates: Coordinates, reason: string) {
    const partial = { ...actor.partial };
    for (const f of FIELDS) partial[f] = { _secret: coordinates[f] };
    const config = parseObject(await ports.hydrate(actor.workspaceId, JSON.stringify(partial), reason, actor.actorId), 'the hydrated config');
    return { partial, config };
  }

  /**
   * The actor's hydrated config with a fresh access token: refreshed first when it expires within
   * the skew, or, with `rejected`, when the provider refused that access token coordinate. The caller
   * registers the returned config's secret values with the redactor (refreshed ones already are).
   */
  async function prepare(actor: OAuthActor, reason: string, signal: AbortSignal, rejected?: string): Promise<{ partial: Record<string, unknown>; config: Record<string, unknown>; accessCoordinate: string }> {
    const deadline = clock().getTime() + waitMs;
    for (;;) {
      signal.throwIfAborted();
      const row = await readRow(actor.actorId);
      const coords = current(actor.partial, row?.coordinates);
      if (row?.refused_refresh_coordinate && row.refused_refresh_coordinate === coords.refresh_token) throw new CredentialNeedsReauthorizationError();
      const expiresAt = row?.expires_at && row.coordinates.access_token === coords.access_token ? row.expires_at.getTime() : undefined;
      const { partial, config } = await hydrateWith(actor, coords, reason);
      const expiry = expiresAt ?? Date.parse(String(config.token_expiry_date ?? ''));
      const stale = rejected ? coords.access_token === rejected : !(expiry > clock().getTime() + skewMs);
      if (!stale) return { partial, config, accessCoordinate: coords.access_token! };
      const holder = `${process.pid}:${randomUUID()}`;
      if (!(await tryLease(actor, holder))) {
        // Another replica refreshes this credential: wait for what it stores.
        if (clock().getTime() > deadline) throw new CredentialRefreshError('timed out waiting for another refresh of the OAuth credential');
        await sleep(150 + Math.floor(Math.random() * 100), undefined, { signal });
        continue;
      }
      try {
        const latest = await readRow(actor.actorId);
        const again = current(actor.partial, latest?.coordinates);
        if (latest?.refused_refresh_coordinate && latest.refused_refresh_coordinate === again.refresh_token) throw new CredentialNeedsReauthorizationError();
        if (again.access_token !== coords.access_token) continue;
        return { ...(await refresh(actor, coords, config, partial, signal)) };
      } finally {
        await release(actor.actorId, holder).catch((err: unknown) => logger.warn({ err, actorId: actor.actorId }, 'could not release the refresh lease; it expires by itself'));
      }
    }
  }

  async function refresh(actor: OAuthActor, coords: Coordinates, config: Record<string, unknown>, partial: Record<string, unknown>, signal: AbortSignal) {
    const registered: string[] = [];
    const register = (v: string) => {
      redactor.register(v);
      registered.push(v);
    };
    let tokens;
    try {
      tokens = await refreshAccessToken(
        actor.oauth,
        { clientId: String(config.client_id ?? ''), clientSecret: String(config.client_secret ?? ''), refreshToken: String(config.refresh_token ?? '') },
        { egress, signal, onDerived: register },
      );
    } catch (err) {
      if (err instanceof InvalidGrantError) {
        await sql`update ${table} set refused_refresh_coordinate = ${coords.refresh_token!} where actor_id = ${actor.actorId}`.execute(db);
        await publish('CredentialNeedsReauthorization', actor.actorId, { actorId: actor.actorId, workspaceId: actor.workspaceId, refreshTokenCoordinate: coords.refresh_token!, occurredAt: clock().toISOString() });
        logger.warn({ actorId: actor.actorId }, 'OAuth grant refused by the provider: the credential needs reauthorization');
        throw new CredentialNeedsReauthorizationError();
      }
      const message = redactor.redact(err instanceof Error ? err.message : 'refresh failed');
      await publish('CredentialRefreshFailed', actor.actorId, { actorId: actor.actorId, workspaceId: actor.workspaceId, reason: message, occurredAt: clock().toISOString() });
      throw new CredentialRefreshError(`OAuth refresh failed: ${message}`);
    } finally {
      for (const v of registered) redactor.unregister(v);
    }
    // The new tokens are secrets from the moment they arrive: registered before anything (a failed
    // write's error, a log line) can carry them; the runner registers them again for its run.
    const fresh = [tokens.accessToken, ...(tokens.refreshToken ? [tokens.refreshToken] : [])];
    for (const v of fresh) redactor.register(v);
    try {
      return await storeRefreshed(actor, coords, config, partial, tokens);
    } finally {
      for (const v of fresh) redactor.unregister(v);
    }
  }

  async function storeRefreshed(actor: OAuthActor, coords: Coordinates, config: Record<string, unknown>, partial: Record<string, unknown>, tokens: TokenResponse) {
    const expiresAt = new Date(clock().getTime() + (tokens.expiresInSeconds ?? 3600) * 1000).toISOString();
    const rotated = tokens.refreshToken !== undefined && tokens.refreshToken !== config.refresh_token;
    const writes: { field: Field; value: string }[] = [
      { field: 'access_token', value: tokens.accessToken },
      { field: 'token_expiry_date', value: expiresAt },
      ...(rotated ? [{ field: 'refresh_token' as const, value: tokens.refreshToken! }] : []),
    ];
    // Expected version: the version this refresh started from; a concurrent writer makes it fail rather than overwrite.
    const request = writes.map((w) => ({ baseCoordinate: split(coords[w.field]!).base, expectedVersion: split(coords[w.field]!).version, value: w.value }));
    let written: { coordinate: string; version: number }[] | undefined;
    for (let attempt = 1; !written; attempt++) {
      try {
        written = await ports.writeSecrets(actor.workspaceId, actor.actorId, request);
      } catch (err) {
        // The provider may already have rotated the refresh token: a lost write loses the grant, so transient failures are retried.
        if ((isCofferError(err) && err.code === 'version_conflict') || attempt >= 5) {
          logger.error({ err, actorId: actor.actorId }, 'could not store the refreshed OAuth tokens');
          throw new CredentialRefreshError('the refreshed OAuth tokens could not be stored');
        }
        await sleep(200 * attempt);
      }
    }
    const next: Coordinates = { ...coords };
    writes.forEach((w, i) => (next[w.field] = written![i]!.coordinate));
    await sql`update ${table} set coordinates = ${JSON.stringify(next)}::jsonb, expires_at = ${expiresAt}, refreshes = refreshes + 1, refused_refresh_coordinate = null where actor_id = ${actor.actorId}`.execute(db);
    await publish('CredentialRefreshed', actor.actorId, {
      actorId: actor.actorId,
      workspaceId: actor.workspaceId,
      accessTokenCoordinate: next.access_token!,
      refreshTokenCoordinate: rotated ? next.refresh_token! : '',
      expiresAt,
      occurredAt: clock().toISOString(),
    });
    logger.info({ actorId: actor.actorId, accessTokenCoordinate: next.access_token, rotated }, 'OAuth access token refreshed');
    const fresh = { ...config, access_token: tokens.accessToken, token_expiry_date: expiresAt, ...(rotated && { refresh_token: tokens.refreshToken }) };
    const freshPartial = { ...partial };
    for (const f of FIELDS) freshPartial[f] = { _secret: next[f] };
    return { partial: freshPartial, config: fresh, accessCoordinate: next.access_token! };
  }

  /**
   * Revokes a deleted actor's grant at the provider (RFC 7009) with its newest refresh token. Under
   * the refresh lease (so no refresh is half done), the refresh token's coordinate is first marked
   * refused: no replica refreshes this credential again, so the token revoked is the last one. Then
   * the endpoint is tried with exponential back-off; the outcome is published as
   * CredentialRevokedAtProvider or, after the last attempt, CredentialRevocationFailed.
   */
  async function revoke(actor: OAuthActor, signal: AbortSignal): Promise<{ revoked: boolean; attempts: number }> {
    const attempts = Math.max(1, deps.revocation?.attempts ?? 6);
    const backoff = deps.revocation?.backoffMs ?? 1_000;
    const deadline = clock().getTime() + waitMs;
    const holder = `${process.pid}:${randomUUID()}`;
    while (!(await tryLease(actor, holder))) {
      if (clock().getTime() > deadline) break; // a lease left by a dead replica expires; revoke anyway
      await sleep(150 + Math.floor(Math.random() * 100), undefined, { signal });
    }
    let coords: Coordinates;
    try {
      coords = current(actor.partial, (await readRow(actor.actorId))?.coordinates);
      await sql`update ${table} set refused_refresh_coordinate = ${coords.refresh_token!} where actor_id = ${actor.actorId}`.execute(db);
    } finally {
      await release(actor.actorId, holder).catch((err: unknown) => logger.warn({ err, actorId: actor.actorId }, 'could not release the refresh lease; it expires by itself'));
    }
    const fail = async (reason: string, tries: number) => {
      await publish('CredentialRevocationFailed', actor.actorId, { actorId: actor.actorId, workspaceId: actor.workspaceId, reason, attempts: tries, occurredAt: clock().toISOString() });
      logger.warn({ actorId: actor.actorId, reason, attempts: tries }, 'could not revoke the OAuth grant at the provider');
      return { revoked: false, attempts: tries };
    };
    let config: Record<string, unknown>;
    try {
      config = (await hydrateWith(actor, coords, `revoke ${actor.actorId}`)).config;
    } catch (err) {
      return fail(isCofferError(err) ? `the credential could not be read (${err.code})` : 'the credential could not be read', 0);
    }
    const registered: string[] = [];
    const register = (v: unknown) => {
      if (typeof v !== 'string') return;
      redactor.register(v);
      registered.push(v);
    };
    for (const f of FIELDS) register(config[f]);
    try {
      let reason = '';
      for (let attempt = 1; attempt <= attempts; attempt++) {
        const result = await revokeRefreshToken(
          actor.oauth,
          { clientId: String(config.client_id ?? ''), clientSecret: String(config.client_secret ?? ''), refreshToken: String(config.refresh_token ?? '') },
          { egress, signal, onDerived: register },
        );
        if (result.revoked) {
          await publish('CredentialRevokedAtProvider', actor.actorId, { actorId: actor.actorId, workspaceId: actor.workspaceId, attempts: attempt, occurredAt: clock().toISOString() });
          logger.info({ actorId: actor.actorId, attempts: attempt }, 'OAuth grant revoked at the provider');
          return { revoked: true, attempts: attempt };
        }
        reason = redactor.redact(result.reason);
        if (!result.transient) return await fail(reason, attempt);
        if (attempt < attempts) {
          logger.warn({ actorId: actor.actorId, attempt, reason }, 'revocation at the provider failed; retrying');
          await sleep(Math.min(backoff * 2 ** (attempt - 1), 60_000), undefined, { signal });
        }
      }
      return await fail(reason, attempts);
    } finally {
      for (const v of registered) redactor.unregister(v);
    }
  }

  return { prepare, revoke };
}

/** The credential keeper, as composed by main.ts. */
export type OAuthCredentials = ReturnType<typeof createOAuthCredentials>;
