import { randomBytes } from 'node:crypto';
import { compactVerify, createLocalJWKSet, type JWK } from 'jose';
import type { Kysely } from 'kysely';
import { CofferError, createOnce, isCofferError, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import type { AppendedEvent, EventStore } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import type { Principal, TokenKind, UserRole } from '@coffer/tokens';
import * as app from './domain/application.decider';
import { decide, evolve, initialState, type ServiceIdentityEvent } from './domain/service-identity.decider';
import {
  findApplication,
  findLoginAttempts,
  findOrganization,
  findServiceIdentity,
  loginAttemptKey,
  releaseLoginAttempt,
  reserveLoginAttempt,
  upsertServiceIdentity,
  type ApplicationRow,
} from './auth.postgres';
import * as lockout from './domain/client-lockout.decider';
import { DUMMY_HASH, hashSecret, verifySecret } from './password-hash';
import { signToken, type SigningKey } from './signing-keys';
import type { AuthDatabase } from './auth.database';

/** A service identity as configured: client id, its secret (hashed before storing) and its role. */
export interface ConfiguredIdentity {
  clientId: string;
  clientSecret: string;
  role: string;
}

/** Lifetimes of the tokens auth issues, in seconds. */
export interface TokenLifetimes {
  service: number;
  application: number;
  scoped: number;
  widget: number;
}

/** Default lifetimes: application 15 minutes, scoped and widget 20 minutes, service 15 minutes. */
export const DEFAULT_LIFETIMES: TokenLifetimes = { service: 900, application: 900, scoped: 1200, widget: 1200 };

/** The organization that owns a live workspace at config ('' when none does), or undefined when there is no such workspace. */
export type WorkspaceOrganization = (workspaceId: string) => Promise<string | undefined>;

/** Makes (or finds) the workspace of an organization's end user at config; returns its id. */
export type ProvisionWorkspace = (organizationId: string, externalUserId: string) => Promise<string>;

export interface AuthServiceDeps {
  db: Kysely<AuthDatabase>;
  store: EventStore<AuthDatabase>;
  schema: string;
  namespace: MessagingNamespace;
  /** The key to sign with now (the ring's active key). */
  signingKey: () => Promise<SigningKey>;
  /** The published keys (the ring's JWKS): a token presented for revocation must carry one's signature. */
  jwks: () => Promise<{ keys: JWK[] }>;
  issuer: string;
  lifetimes?: Partial<TokenLifetimes>;
  /** Audiences a service token may be issued for. */
  audiences: readonly string[];
  /** How long a rotated application secret keeps working. Default 24 hours. */
  secretGraceMs?: number;
  /** Absent: scoped tokens cannot create end users' workspaces. */
  provisionWorkspace?: ProvisionWorkspace;
  /** Absent: scoped tokens for a given workspace_id are refused, since the workspace cannot be checked. */
  workspaceOrganization?: WorkspaceOrganization;
  clock: () => Date;
  newId: () => string;
  /** Failed logins that lock a client id out, and for how long. */
  lockoutPolicy: lockout.LockoutPolicy;
  /** Waits before a failed answer (injected so tests need not wait). */
  sleep?: (ms: number) => Promise<void>;
  /** Checks a secret against a stored hash; the real scrypt check unless a test counts the checks. */
  verifySecret?: (secret: string, hash: string) => Promise<boolean>;
}

/** The services whose APIs an organization's tokens are for. */
export const USER_TOKEN_AUDIENCES = ['auth', 'config'];
const SOURCE = 'coffer/auth';
const CLIENT_ID = /^[a-z][a-z0-9-]{0,62}$/;
const EXTERNAL_USER_ID = /^[\x21-\x7e]{1,200}$/;
/** Application client ids are `app-<uuid>`; anything else is no application and costs no lookup. */
const APPLICATION_ID = /^app-[0-9a-f-]{36}$/;

function field(name: string, reason: string, message: string): CofferError {
  return new CofferError('invalid_argument', message, [{ field: name, reason }]);
}

/** Service identities, organizations and their applications, every kind of token, and revocations. */
export function createAuthService(deps: AuthServiceDeps) {
  const { db, store, schema, namespace: ns, clock } = deps;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const lifetimes: TokenLifetimes = { ...DEFAULT_LIFETIMES, ...deps.lifetimes };
  const graceMs = deps.secretGraceMs ?? 24 * 60 * 60_000;
  const verify = deps.verifySecret ?? verifySecret;

  function message(name: IntegrationEventName, data: object, subject: string) {
    return (r: AppendedEvent) => integrationEventMessage(ns, name, data as never, { eventId: r.eventId, source: SOURCE, subject, time: r.recordedAt });
  }

  async function sign(kind: TokenKind, claims: { subject: string; audience: string | string[]; role: string; extra?: Record<string, string>; notAfter?: Date }) {
    const issuedAt = clock();
    const ttl = lifetimes[kind];
    const expiresAt = claims.notAfter && claims.notAfter.getTime() < issuedAt.getTime() + ttl * 1000 ? claims.notAfter : undefined;
    const { token, expiresAt: exp } = await signToken(await deps.signingKey(), {
      kind,
      issuer: deps.issuer,
      subject: claims.subject,
      audience: claims.audience,
      role: claims.role,
      tokenId: deps.newId(),
      issuedAt,
      expiresAt,
      ttlSeconds: ttl,
      extra: claims.extra,
    });
    return { accessToken: token, expiresIn: Math.max(0, Math.floor(exp.getTime() / 1000) - Math.floor(issuedAt.getTime() / 1000)) };
  }

  async function loadIdentity(clientId: string) {
    const streamId = `service-identity-${clientId}`;
    const { currentVersion, events } = await store.readStream(streamId);
    const state = events.reduce((s, e) => evolve(s, { type: e.type, data: e.data } as ServiceIdentityEvent), initialState());
    return { streamId, currentVersion, state };
  }

  async function appendIdentity(streamId: string, version: number, state: ReturnType<typeof initialState>, decided: ServiceIdentityEvent[], now: string) {
    const final = decided.reduce(evolve, state);
    await store.append(streamId, version, decided.map((e) => ({ type: e.type, data: { ...e.data } })), {
      project: (trx) => upsertServiceIdentity(trx, schema, { clientId: final.clientId!, role: final.role!, secretHash: final.secretHash!, revokedAt: final.revokedAt, updatedAt: now }),
      outbox: (recorded) =>
        recorded.flatMap((r) => {
          if (r.type === 'ServiceIdentityRegistered') return [message('ServiceIdentityRegistered', { clientId: final.clientId, occurredAt: now }, final.clientId!)(r)];
          if (r.type === 'ServiceIdentityRevoked') return [message('ServiceIdentityRevoked', { clientId: final.clientId, occurredAt: now }, final.clientId!)(r)];
          return [];
        }),
    });
  }

  /** Registers the configured identities (hashed), recording only what changed. */
  async function registerIdentities(identities: ConfiguredIdentity[]): Promise<void> {
    for (const identity of identities) {
      const { streamId, currentVersion, state } = await loadIdentity(identity.clientId);
      const matches = state.secretHash ? await verifySecret(identity.clientSecret, state.secretHash) : false;
      const now = clock().toISOString();
      const decided = decide(
        {
          type: 'RegisterServiceIdentity',
          clientId: identity.clientId,
          role: identity.role,
          secretHash: matches && state.secretHash ? state.secretHash : await hashSecret(identity.clientSecret),
          secretMatchesStored: matches,
          now,
        },
        state,
      );
      if (decided.length > 0) await appendIdentity(streamId, currentVersion, state, decided, now);
    }
  }

  /** Revokes every token of a service identity; it gets new ones once its configured secret changes. */
  async function revokeServiceIdentity(clientId: string): Promise<void> {
    if (!CLIENT_ID.test(clientId)) throw field('client_id', 'invalid', 'client_id must be a service identity client id');
    const { streamId, currentVersion, state } = await loadIdentity(clientId);
    const now = clock().toISOString();
    await appendIdentity(streamId, currentVersion, state, decide({ type: 'RevokeServiceIdentity', clientId, now }, state), now);
  }

  /**
   * Checks a client secret against the candidate hashes of a client, slowing and locking out repeated
   * failures per client id, known or not. An attempt is reserved in Postgres before its secret is
   * checked, so concurrent attempts and replicas never check more secrets than the limit. Unknown
   * ids get the same answers on the same schedule, and leave no event.
   */
  async function checkCredentials(clientId: string, clientSecret: string, hashes: string[] | undefined): Promise<void> {
    // The client id keys the attempt count: a length no issued id has is refused before it is stored.
    if (clientId.length > 200) throw field('client_id', 'invalid', 'client_id is too long');
    const known = hashes !== undefined;
    const policy = deps.lockoutPolicy;
    const key = loginAttemptKey(clientId);
    let outcome: lockout.LoginOutcome = { type: 'refused' };
    if (await reserveLoginAttempt(db, schema, key, policy, clock())) {
      let ok = false;
      try {
        for (const hash of hashes?.length ? hashes : [DUMMY_HASH]) if (await verify(clientSecret, hash)) ok = true;
      } finally {
        const released = await releaseLoginAttempt(db, schema, key, { ok: known && ok, maxFailures: policy.maxFailures, lockMs: policy.lockMs }, clock());
        outcome =
          known && ok
            ? { type: 'succeeded', clearedFailures: released.cleared }
            : { type: 'failed', failuresInWindow: released.failures, lockedUntil: released.lockedUntil?.toISOString() ?? null };
      }
    }
    const events = known ? lockout.decide(clientId, outcome, clock().toISOString()) : [];
    if (outcome.type === 'succeeded') return recordLockout(clientId, events);
    // A known id's events are written while its answer is held back: they cost it no extra time.
    await Promise.all([sleep(lockout.delayOf(outcome, policy)), recordLockout(clientId, events)]);
    throw new CofferError('unauthenticated', 'invalid client credentials');
  }

  /** Appends a known client's login outcomes and their published events (the count itself is in login_attempts). */
  async function recordLockout(clientId: string, decided: lockout.ClientLockoutEvent[]): Promise<void> {
    if (decided.length === 0) return;
    await store.append(`login-${clientId}`, 'any', decided.map((e) => ({ type: e.type, data: { ...e.data } })), {
      outbox: (recorded) =>
        recorded.flatMap((r) => {
          const e = decided.find((d) => d.type === r.type);
          if (e?.type === 'LoginFailed') return [message('LoginFailed', { clientId, failuresInWindow: e.data.failuresInWindow, occurredAt: e.data.failedAt }, clientId)(r)];
          if (e?.type === 'ClientLocked') return [message('ClientLocked', { clientId, lockedUntil: e.data.lockedUntil, occurredAt: e.data.lockedAt }, clientId)(r)];
          return [];
        }),
    });
  }

  /** The failures and the lock of a client id, for operators and for the admins of the application's organization. */
  async function clientLockout(caller: Principal, clientId: string): Promise<{ failuresInWindow: number; lockedUntil: string }> {
    if (caller.kind !== 'service') {
      const application = APPLICATION_ID.test(clientId) ? await findApplication(db, schema, clientId) : undefined;
      if (!application || application.organization_id !== caller.organizationId) throw new CofferError('permission_denied', 'the client is not an application of this organization');
    }
    const row = await findLoginAttempts(db, schema, loginAttemptKey(clientId));
    const until = row?.locked_until && row.locked_until.getTime() > clock().getTime() ? row.locked_until.toISOString() : '';
    return { failuresInWindow: row?.failures ?? 0, lockedUntil: until };
  }

  /** Exchanges client credentials for a short-lived service token for one audience. */
  async function issueServiceToken(clientId: string, clientSecret: string, audience: string): Promise<{ accessToken: string; expiresIn: number }> {
    if (!deps.audiences.includes(audience)) {
      throw new CofferError('invalid_argument', `audience must be one of ${deps.audiences.join(', ')}`, [{ field: 'audience', reason: 'unknown' }]);
    }
    const identity = clientId && CLIENT_ID.test(clientId) ? await findServiceIdentity(db, schema, clientId) : undefined;
    await checkCredentials(clientId, clientSecret, identity ? [identity.secret_hash] : undefined);
    if (identity!.revoked_at) throw new CofferError('unauthenticated', 'invalid client credentials');
    return sign('service', { subject: clientId, audience, role: identity!.role });
  }

  /** Only operators, or the organization's own admins, act on an organization. */
  function requireOrganizationAccess(caller: Principal, organizationId: string): void {
    if (caller.kind === 'service') return;
    if (caller.organizationId !== organizationId) throw new CofferError('permission_denied', 'the token is for another organization');
  }

  /** Creates an organization; a repeated request_id (operators share one scope) answers the first one. */
  async function createOrganization(name: string, requestId?: string): Promise<{ organizationId: string; name: string }> {
    const trimmed = name.trim();
    if (trimmed.length === 0 || trimmed.length > 200) throw field('name', 'invalid', 'name must be 1 to 200 characters');
    return createOnce({
      requestId,
      scope: 'operators',
      method: 'CreateOrganization',
      newId: deps.newId,
      firstResult: async (id) => {
        const first = (await store.readStream(`organization-${id}`)).events[0]?.data as { organizationId: string; name: string } | undefined;
        return first && { organizationId: first.organizationId, name: first.name };
      },
      create: (id) => appendOrganization(id, trimmed),
    });
  }

  async function appendOrganization(organizationId: string, trimmed: string): Promise<{ organizationId: string; name: string }> {
    const now = clock().toISOString();
    await store.append(`organization-${organizationId}`, 0, [{ type: 'OrganizationCreated', data: { organizationId, name: trimmed, createdAt: now } }], {
      project: (trx) => trx.withSchema(schema).insertInto('organizations').values({ organization_id: organizationId, name: trimmed, created_at: now }).execute().then(() => undefined),
      outbox: (recorded) => recorded.map(message('OrganizationCreated', { organizationId, name: trimmed, occurredAt: now }, organizationId)),
    });
    return { organizationId, name: trimmed };
  }

  async function loadApplication(clientId: string) {
    const streamId = `application-${clientId}`;
    const { currentVersion, events } = await store.readStream(streamId);
    const state = events.reduce((s, e) => app.evolve(s, { type: e.type, data: e.data } as unknown as app.ApplicationEvent), app.initialState());
    return { streamId, currentVersion, state };
  }

  async function appendApplication(streamId: string, version: number, state: app.ApplicationState, decided: app.ApplicationEvent[]): Promise<app.ApplicationState> {
    const final = decided.reduce(app.evolve, state);
    if (decided.length === 0) return final;
    const now = clock().toISOString();
    await store.append(streamId, version, decided.map((e) => ({ type: e.type, data: { ...e.data } })), {
      project: async (trx) => {
        const values = {
          organization_id: final.organizationId!,
          name: final.name,
          allowed_origins: JSON.stringify(final.allowedOrigins),
          secret_hash: final.secretHash!,
          previous_secret_hash: final.previousSecretHash,
          previous_valid_until: final.previousValidUntil,
          disabled_at: final.disabledAt,
          version: version + decided.length,
        };
        await trx.withSchema(schema).insertInto('applications').values({ client_id: final.clientId!, ...values }).onConflict((oc) => oc.column('client_id').doUpdateSet(values)).execute();
      },
      // Published events name the application; its secret and the secret's hash stay here.
      outbox: (recorded) =>
        recorded.flatMap((r) => {
          const org = final.organizationId!;
          const id = final.clientId!;
          if (r.type === 'ApplicationCreated') return [message('ApplicationCreated', { clientId: id, organizationId: org, name: final.name, allowedOrigins: final.allowedOrigins, occurredAt: now }, id)(r)];
          if (r.type === 'ApplicationSecretRotated') return [message('ApplicationSecretRotated', { clientId: id, organizationId: org, previousSecretValidUntil: final.previousValidUntil, occurredAt: now }, id)(r)];
          if (r.type === 'ApplicationDisabled') return [message('ApplicationDisabled', { clientId: id, organizationId: org, occurredAt: final.disabledAt }, id)(r)];
          return [];
        }),
    });
    return final;
  }

  function newClientSecret(): string {
    return `coffer_app_secret_${randomBytes(32).toString('base64url')}`;
  }

  function applicationOut(s: app.ApplicationState) {
    return { clientId: s.clientId!, organizationId: s.organizationId!, name: s.name, allowedOrigins: s.allowedOrigins, disabled: s.disabledAt !== null };
  }

  /**
   * Creates an application of an organization. A repeated request_id of the same organization answers
   * the application as first created, with an empty client secret: only the secret's hash is kept.
   */
  async function createApplication(caller: Principal, input: { organizationId: string; name: string; allowedOrigins: string[]; requestId?: string }) {
    const organizationId = input.organizationId || caller.organizationId || '';
    if (!organizationId) throw field('organization_id', 'required', 'organization_id is required');
    if (organizationId.length > 200) throw field('organization_id', 'invalid', 'organization_id is too long');
    requireOrganizationAccess(caller, organizationId);
    return createOnce({
      requestId: input.requestId,
      scope: organizationId,
      method: 'CreateApplication',
      newId: deps.newId,
      firstResult: async (id) => {
        const first = (await store.readStream(`application-app-${id}`)).events[0];
        if (!first) return undefined;
        const created = app.evolve(app.initialState(), { type: first.type, data: first.data } as unknown as app.ApplicationEvent);
        return { application: applicationOut(created), clientSecret: '' };
      },
      create: (id) => newApplication(`app-${id}`, organizationId, input),
    });
  }

  async function newApplication(clientId: string, organizationId: string, input: { name: string; allowedOrigins: string[] }) {
    if (!(await findOrganization(db, schema, organizationId))) throw new CofferError('not_found', 'no such organization', [{ field: 'organization_id', reason: 'not found' }]);
    const clientSecret = newClientSecret();
    const { streamId, currentVersion, state } = await loadApplication(clientId);
    const decided = app.decide(
      { type: 'CreateApplication', clientId, organizationId, name: input.name, allowedOrigins: input.allowedOrigins, secretHash: await hashSecret(clientSecret), now: clock().toISOString() },
      state,
    );
    const final = await appendApplication(streamId, currentVersion, state, decided);
    return { application: applicationOut(final), clientSecret };
  }

  async function requireApplication(caller: Principal, clientId: string) {
    if (!clientId) throw field('client_id', 'required', 'client_id is required');
    if (clientId.length > 200) throw field('client_id', 'invalid', 'client_id is too long');
    const loaded = await loadApplication(clientId);
    if (loaded.state.clientId === null) throw new CofferError('not_found', 'no such application', [{ field: 'client_id', reason: 'not found' }]);
    requireOrganizationAccess(caller, loaded.state.organizationId!);
    return loaded;
  }

  async function rotateApplicationSecret(caller: Principal, clientId: string) {
    const { streamId, currentVersion, state } = await requireApplication(caller, clientId);
    const clientSecret = newClientSecret();
    const decided = app.decide({ type: 'RotateApplicationSecret', secretHash: await hashSecret(clientSecret), now: clock().toISOString(), graceMs }, state);
    const final = await appendApplication(streamId, currentVersion, state, decided);
    return { clientSecret, previousSecretValidUntil: final.previousValidUntil! };
  }

  async function disableApplication(caller: Principal, clientId: string): Promise<void> {
    const { streamId, currentVersion, state } = await requireApplication(caller, clientId);
    await appendApplication(streamId, currentVersion, state, app.decide({ type: 'DisableApplication', now: clock().toISOString() }, state));
  }

  function acceptedHashes(row: ApplicationRow): string[] {
    const hashes = [row.secret_hash];
    if (row.previous_secret_hash && row.previous_valid_until && row.previous_valid_until.getTime() > clock().getTime()) hashes.push(row.previous_secret_hash);
    return hashes;
  }

  /** Exchanges an application's client credentials for an organization-wide token (15 minutes). */
  async function issueApplicationToken(clientId: string, clientSecret: string) {
    const row = APPLICATION_ID.test(clientId) ? await findApplication(db, schema, clientId) : undefined;
    await checkCredentials(clientId, clientSecret, row ? acceptedHashes(row) : undefined);
    if (row!.disabled_at) throw new CofferError('unauthenticated', 'invalid client credentials');
    return sign('application', { subject: clientId, audience: USER_TOKEN_AUDIENCES, role: 'org_admin', extra: { org: row!.organization_id, azp: clientId } });
  }

  async function liveApplication(caller: Principal): Promise<ApplicationRow> {
    const row = caller.applicationId ? await findApplication(db, schema, caller.applicationId) : undefined;
    // The revocation list refuses its tokens already; this closes the gap before the event arrives.
    if (!row || row.disabled_at) throw new CofferError('permission_denied', 'the application of this token is disabled');
    return row;
  }

  /** Exchanges an application token for one scoped to a workspace and/or an end user (20 minutes). */
  async function issueScopedToken(caller: Principal, input: { workspaceId: string; externalUserId: string; createWorkspace: boolean; role: string }) {
    const role = (input.role || 'workspace_editor') as UserRole;
    if (role !== 'workspace_editor' && role !== 'workspace_reader') throw field('role', 'invalid', 'role must be workspace_editor or workspace_reader');
    if (input.externalUserId && !EXTERNAL_USER_ID.test(input.externalUserId)) throw field('external_user_id', 'invalid', 'external_user_id must be 1 to 200 printable characters');
    if (input.workspaceId && !/^[0-9a-f-]{36}$/.test(input.workspaceId)) throw field('workspace_id', 'invalid', 'workspace_id must be a workspace id');
    const row = await liveApplication(caller);
    const org = row.organization_id;
    let workspaceId = input.workspaceId;
    if (workspaceId) {
      if (!deps.workspaceOrganization) {
        throw new CofferError('failed_precondition', 'auth is not connected to config (CONFIG_ADDRESS), so it cannot check that the workspace is this organization\'s');
      }
      // One answer whether the workspace is another organization's or does not exist: no existence oracle.
      if ((await deps.workspaceOrganization(workspaceId)) !== org) {
        throw new CofferError('permission_denied', 'workspace_id is not a workspace of this organization', [{ field: 'workspace_id', reason: 'not this organization' }]);
      }
    } else {
      if (!input.externalUserId) throw field('workspace_id', 'required', 'workspace_id or external_user_id is required');
      const known = await db.withSchema(schema).selectFrom('end_user_workspaces').select('workspace_id').where('organization_id', '=', org).where('external_user_id', '=', input.externalUserId).executeTakeFirst();
      if (input.createWorkspace) {
        if (!deps.provisionWorkspace) throw new CofferError('failed_precondition', 'auth is not connected to config (CONFIG_ADDRESS), so it cannot create workspaces');
        // Idempotent at config: the end user's live workspace, or a new one if it was deleted since.
        workspaceId = await deps.provisionWorkspace(org, input.externalUserId);
        if (known?.workspace_id !== workspaceId) {
          await db
            .withSchema(schema)
            .insertInto('end_user_workspaces')
            .values({ organization_id: org, external_user_id: input.externalUserId, workspace_id: workspaceId })
            .onConflict((oc) => oc.columns(['organization_id', 'external_user_id']).doUpdateSet({ workspace_id: workspaceId }))
            .execute();
        }
      } else if (known) {
        workspaceId = known.workspace_id as string;
      } else {
        throw new CofferError('not_found', 'this end user has no workspace yet; ask with create_workspace', [{ field: 'external_user_id', reason: 'no workspace' }]);
      }
    }
    const extra: Record<string, string> = { org, azp: row.client_id, ws: workspaceId };
    if (input.externalUserId) extra.ext = input.externalUserId;
    const subject = input.externalUserId ? `${org}/${input.externalUserId}` : row.client_id;
    return { ...(await sign('scoped', { subject, audience: USER_TOKEN_AUDIENCES, role, extra })), workspaceId };
  }

  /** Exchanges a scoped token for one bound to one of the application's allowed origins. */
  async function issueWidgetToken(caller: Principal, allowedOrigin: string) {
    const origin = app.normalizeOrigin(allowedOrigin);
    if (!origin) throw field('allowed_origin', 'invalid', 'allowed_origin must be an origin (scheme://host[:port])');
    const row = await liveApplication(caller);
    if (!row.allowed_origins.includes(origin)) throw new CofferError('permission_denied', 'allowed_origin is not one of the application\'s allowed origins', [{ field: 'allowed_origin', reason: 'not allowed' }]);
    // pjti: revoking the scoped token revokes every widget token minted from it.
    const extra: Record<string, string> = { org: caller.organizationId!, azp: caller.applicationId!, ws: caller.workspaceId!, origin, pjti: caller.tokenId };
    if (caller.externalUserId) extra.ext = caller.externalUserId;
    // A widget token never outlives the scoped token it came from.
    return { ...(await sign('widget', { subject: caller.subject, audience: USER_TOKEN_AUDIENCES, role: caller.role, extra, notAfter: caller.expiresAt })), workspaceId: caller.workspaceId! };
  }

  /**
   * Revokes one token. An organization's admin revokes its own organization's tokens by presenting
   * them; operators may also revoke by jti and expiry. Revoking twice is not an error.
   */
  async function revokeToken(caller: Principal, input: { token: string; tokenId: string; expiresAt: string }): Promise<string> {
    let tokenId = input.tokenId;
    let expiresAt = input.expiresAt;
    if (input.token) {
      // Only a token auth itself signed can be revoked by presenting it; its expiry does not matter here.
      let claims: Record<string, unknown>;
      try {
        const { payload } = await compactVerify(input.token, createLocalJWKSet(await deps.jwks()), { algorithms: ['EdDSA'] });
        claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
      } catch {
        throw field('token', 'invalid', 'token is not one auth signed with a published key');
      }
      if (claims.iss !== deps.issuer || typeof claims.jti !== 'string' || typeof claims.exp !== 'number') throw field('token', 'invalid', 'token is not one of ours');
      if (caller.kind !== 'service' && claims.org !== caller.organizationId) throw new CofferError('permission_denied', 'the token is of another organization');
      tokenId = claims.jti;
      expiresAt = new Date(claims.exp * 1000).toISOString();
    } else {
      if (caller.kind !== 'service') throw field('token', 'required', 'an organization revokes a token by presenting it');
      if (!tokenId) throw field('token_id', 'required', 'token or token_id is required');
      if (!expiresAt || Number.isNaN(Date.parse(expiresAt))) throw field('expires_at', 'invalid', 'expires_at (RFC 3339) is required with token_id');
      expiresAt = new Date(expiresAt).toISOString();
    }
    if (tokenId.length > 200) throw field('token_id', 'invalid', 'token_id is too long');
    const now = clock().toISOString();
    try {
      await store.append(`token-revocation-${tokenId}`, 0, [{ type: 'TokenRevoked', data: { tokenId, expiresAt, revokedBy: caller.subject, revokedAt: now } }], {
        outbox: (recorded) => recorded.map(message('TokenRevoked', { tokenId, expiresAt, revokedBy: caller.subject, occurredAt: now }, tokenId)),
      });
    } catch (err) {
      if (!(isCofferError(err) && err.code === 'version_conflict')) throw err;
    }
    return tokenId;
  }

  return {
    registerIdentities,
    issueServiceToken,
    revokeServiceIdentity,
    clientLockout,
    createOrganization,
    createApplication,
    rotateApplicationSecret,
    disableApplication,
    issueApplicationToken,
    issueScopedToken,
    issueWidgetToken,
    revokeToken,
  };
}

/** The auth use cases, as composed by main.ts. */
export type AuthService = ReturnType<typeof createAuthService>;
