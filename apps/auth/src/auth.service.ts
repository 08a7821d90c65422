import type { Kysely } from 'kysely';
import { CofferError, type MessagingNamespace } from '@coffer/contracts';
import type { EventStore } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import { decide, evolve, initialState, type ServiceIdentityEvent } from './domain/service-identity.decider';
import { findServiceIdentity, upsertServiceIdentity } from './auth.postgres';
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
}

/** The auth use cases of the skeleton: service identities and service tokens. */
export function createAuthService(deps: AuthServiceDeps) {
  const { db, store, schema, namespace: ns, clock } = deps;

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
    const ok = await verifySecret(clientSecret, identity?.secret_hash ?? DUMMY_HASH);
    if (!identity || !ok) throw new CofferError('unauthenticated', 'invalid client credentials');
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

  /** The public JWKS: only public keys. */
  function jwks(): { keys: unknown[] } {
    return { keys: [deps.signingKey.publicJwk] };
  }

  return { registerIdentities, issueServiceToken, jwks };
}

/** The auth use cases, as composed by main.ts. */
export type AuthService = ReturnType<typeof createAuthService>;
