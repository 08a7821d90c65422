import { CofferError, isCofferError, type IntegrationEventMessage } from '@coffer/contracts';
import type { CloudEvent } from '@coffer/messaging';
import type { Logger } from '@coffer/telemetry';
import { parseObject } from '../connectors/connector';
import type { OAuthCredentials } from './oauth-credentials';
import type { OAuthDeclaration } from './token-endpoint';

/** What revocation needs from config: the held partial config of a deleted actor, and the release of the hold. */
export interface RevocationPorts {
  /** The pending revocation of a deleted actor; undefined when none is pending (done already). */
  getCredentialRevocation(actorId: string): Promise<{ actorId: string; workspaceId: string; partialConfigJson: string; oauthJson: string } | undefined>;
  /** Tells config the revocation is over (revoked or given up): it shreds the actor's secrets now. */
  completeCredentialRevocation(actorId: string): Promise<void>;
}

/** The durable consumer name of CredentialRevocationRequested. */
export const REVOCATION_REQUESTED_CONSUMER = 'sync-worker-revocation-requested';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Handles config's CredentialRevocationRequested: config holds the deleted actor's secrets (its
 * shredding is queued but not due) until this handler has revoked the grant at the provider and
 * released the hold, so the refresh token can still be hydrated; nothing races the shredding. A
 * redelivery after a crash revokes again (harmless: RFC 7009 answers 200 for a revoked token) or
 * finds nothing pending.
 */
export function createRevocationHandler(deps: { ports: RevocationPorts; credentials: OAuthCredentials; logger: Logger }) {
  const { ports, credentials, logger } = deps;
  return async function handleRevocationRequested(event: CloudEvent, signal: AbortSignal = new AbortController().signal): Promise<void> {
    const { actorId } = event.data as IntegrationEventMessage<'CredentialRevocationRequested'>;
    if (typeof actorId !== 'string' || !UUID.test(actorId)) throw new CofferError('invalid_argument', 'CredentialRevocationRequested needs a uuid actor_id');
    const pending = await ports.getCredentialRevocation(actorId);
    if (!pending) {
      logger.info({ actorId, eventId: event.id }, 'no revocation pending for this actor (done already)');
      return;
    }
    const oauth = parseObject(pending.oauthJson, 'the OAuth declaration') as unknown as OAuthDeclaration;
    const partial = parseObject(pending.partialConfigJson, 'the partial config');
    await credentials.revoke({ actorId, workspaceId: pending.workspaceId, partial, oauth }, signal);
    try {
      await ports.completeCredentialRevocation(actorId);
    } catch (err) {
      if (!(isCofferError(err) && err.code === 'not_found')) throw err;
    }
  };
}
