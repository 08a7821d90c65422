import type { Kysely } from 'kysely';
import { CofferError, isCofferError, type MessagingNamespace } from '@coffer/contracts';
import type { EventStore } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import { decide, evolve, initialState, type ServiceIdentityEvent } from './domain/service-identity.decider';
import { findServiceIdentity, upsertClientLockout, upsertServiceIdentity } from './auth.postgres';
import * as lockout from './domain/client-lockout.decider';
import { DUMMY_HASH, hashSecret, verifySecret } from './password-hash';
import { signServiceToken, type SigningKey } from './signing-keys';

/** A service identity as configured: client id, its secret (hashed before storing) and its role. */
export interface ConfiguredIdentity {
  clientId: string;
  clientSecret: string;
  role: string;
}

export interface AuthServiceDeps {
  db: Kysely<any>;
  store: EventStore;
  schema: string;
  namespace: MessagingNamespace;
  signingKey: SigningKey;
  issuer: string;
  serviceTokenTtlSeconds: number;
  audiences: readonly string[];
  clock: () => Date;
  newId: () => string;
  /** Failed logins that lock a client id out, and for how long. */
  lockoutPolicy: lockout.LockoutPolicy;
  /** Waits before a failed answer (injected so tests need not wait). */
  sleep?: (ms: number) => Promise<void>;
}

/** The auth use cases of the skeleton: service identities and service tokens. */
export function createAuthService(deps: AuthServiceDeps) {
  const { db, store, schema, namespace: ns, clock } = deps;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  /** Registers the configured identities (hashed), recording only what changed. */
  async function registerIdentities(identities: ConfiguredIdentity[]): Promise<void> {
    for (const identity of identities) {
      const streamId = `service-identity-${identity.clientId}`;
      const { currentVersion, events } = await store.readStream(streamId);
      const state = events.reduce((s, e) => evolve(s, { type: e.type, data: e.data } as ServiceIdentityEvent), initialState());
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
      if (decided.length === 0) continue;
      const final = decided.reduce(evolve, state);
      await store.append(streamId, currentVersion, decided.map((e) => ({ type: e.type, data: { ...e.data } })), {
        project: (trx) => upsertServiceIdentity(trx, schema, { clientId: identity.clientId, role: final.role!, secretHash: final.secretHash!, updatedAt: now }),
        outbox: (recorded) =>
          recorded
            .filter((r) => r.type === 'ServiceIdentityRegistered')
            .map((r) =>
              integrationEventMessage(ns, 'ServiceIdentityRegistered', { clientId: identity.clientId, occurredAt: now }, {
                eventId: r.eventId,
                source: 'coffer/auth',
                subject: identity.clientId,
                time: r.recordedAt,
              }),
            ),
      });
    }
  }

  /** Exchanges client credentials for a short-lived service token for one audience. */
  async function issueServiceToken(clientId: string, clientSecret: string, audience: string): Promise<{ accessToken: string; expiresIn: number }> {
    if (!deps.audiences.includes(audience)) {
      throw new CofferError('invalid_argument', `audience must be one of ${deps.audiences.join(', ')}`, [{ field: 'audience', reason: 'unknown' }]);
    }
    const identity = clientId ? await findServiceIdentity(db, schema, clientId) : undefined;
    const streamId = `login-${clientId}`;
    const { currentVersion, events } = identity ? await store.readStream(streamId) : { currentVersion: 0, events: [] };
    const state = events.reduce((s, e) => lockout.evolve(s, { type: e.type, data: e.data } as unknown as lockout.ClientLockoutEvent), lockout.initialState());
    const now = clock();
    const ok = !lockout.isLocked(state, now) && (await verifySecret(clientSecret, identity?.secret_hash ?? DUMMY_HASH));
    if (!identity || !ok) {
      let failures = 1;
      if (identity && !lockout.isLocked(state, now)) {
        // Failures are recorded for real client ids only: unknown ids cannot grow the log.
        const decided = lockout.decide({ type: 'RecordFailedLogin', clientId, now: now.toISOString(), policy: deps.lockoutPolicy }, state);
        failures = (decided[0]!.data as { failuresInWindow: number }).failuresInWindow;
        await recordLockout(streamId, currentVersion, decided);
      } else if (identity) {
        failures = deps.lockoutPolicy.maxFailures;
      }
      await sleep(lockout.failureDelayMs(failures));
      throw new CofferError('unauthenticated', 'invalid client credentials');
    }
    await recordLockout(streamId, currentVersion, lockout.decide({ type: 'RecordSuccessfulLogin', clientId, now: now.toISOString() }, state));
    const accessToken = await signServiceToken(deps.signingKey, {
      issuer: deps.issuer,
      subject: clientId,
      audience,
      role: identity.role,
      tokenId: deps.newId(),
      issuedAt: clock(),
      ttlSeconds: deps.serviceTokenTtlSeconds,
    });
    return { accessToken, expiresIn: deps.serviceTokenTtlSeconds };
  }

  /** Appends login outcomes with their read model row and published events; a concurrent outcome wins quietly. */
  async function recordLockout(streamId: string, version: number, decided: lockout.ClientLockoutEvent[]): Promise<void> {
    if (decided.length === 0) return;
    const final = decided.reduce(lockout.evolve, lockout.initialState());
    const failed = decided.find((e) => e.type === 'LoginFailed')?.data as { clientId: string; failuresInWindow: number; failedAt: string } | undefined;
    const locked = decided.find((e) => e.type === 'ClientLocked')?.data as { clientId: string; lockedUntil: string; lockedAt: string } | undefined;
    const clientId = decided[0]!.data.clientId;
    const at = clock().toISOString();
    try {
      await store.append(streamId, version, decided.map((e) => ({ type: e.type, data: { ...e.data } })), {
        project: (trx) =>
          upsertClientLockout(trx, schema, {
            clientId,
            failuresInWindow: failed?.failuresInWindow ?? 0,
            lockedUntil: final.lockedUntil ? new Date(final.lockedUntil).toISOString() : null,
            updatedAt: at,
          }),
        outbox: (recorded) =>
          recorded.flatMap((r) => {
            const meta = { eventId: r.eventId, source: 'coffer/auth', subject: clientId, time: r.recordedAt };
            if (r.type === 'LoginFailed' && failed) return [integrationEventMessage(ns, 'LoginFailed', { clientId, failuresInWindow: failed.failuresInWindow, occurredAt: failed.failedAt }, meta)];
            if (r.type === 'ClientLocked' && locked) return [integrationEventMessage(ns, 'ClientLocked', { clientId, lockedUntil: locked.lockedUntil, occurredAt: locked.lockedAt }, meta)];
            return [];
          }),
      });
    } catch (err) {
      if (!(isCofferError(err) && err.code === 'version_conflict')) throw err;
    }
  }

  /** The public JWKS: only public keys. */
  function jwks(): { keys: unknown[] } {
    return { keys: [deps.signingKey.publicJwk] };
  }

  return { registerIdentities, issueServiceToken, jwks };
}

/** The auth use cases, as composed by main.ts. */
export type AuthService = ReturnType<typeof createAuthService>;
