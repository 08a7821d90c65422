import type { configV1, secretsV1 } from '@coffer/contracts';
import type { PromiseClient } from '@coffer/rpc';
import type { CheckPorts } from './check-runner';
import type { CodeExchangePorts } from './oauth/code-exchange';
import { isCofferError } from '@coffer/contracts';
import type { CredentialPorts } from './oauth/oauth-credentials';
import type { RevocationPorts } from './oauth/revocation-requests';
import type { SyncPlan, SyncPorts } from './sync-runner';

/** The runners' ports over gRPC: config's GetSyncPlan and secrets' HydrateConfig, with sync-worker's own service tokens. */
export function grpcPorts(
  config: Pick<PromiseClient<configV1.ConfigServiceClient>, 'getSyncPlan' | 'getCredentialRevocation' | 'completeCredentialRevocation'>,
  secrets: Pick<PromiseClient<secretsV1.SecretsServiceClient>, 'hydrateConfig' | 'writeSecrets'>,
): SyncPorts & CheckPorts & CredentialPorts & RevocationPorts & CodeExchangePorts {
  return {
    async getSyncPlan(connectionId): Promise<SyncPlan> {
      const { plan } = await config.getSyncPlan({ connectionId });
      if (!plan) throw new Error('config returned no sync plan');
      return plan;
    },
    async getCredentialRevocation(actorId) {
      try {
        return await config.getCredentialRevocation({ actorId });
      } catch (err) {
        if (isCofferError(err) && err.code === 'not_found') return undefined;
        throw err;
      }
    },
    async completeCredentialRevocation(actorId) {
      await config.completeCredentialRevocation({ actorId });
    },
    async hydrate(workspaceId, partialConfigJson, reason, ownerId) {
      return (await secrets.hydrateConfig({ workspaceId, partialConfigJson, reason, ownerId })).configJson;
    },
    async writeSecrets(workspaceId, ownerId, writes) {
      const { secrets: written } = await secrets.writeSecrets({ workspaceId, ownerId, ownerWorkspaceId: '', writeId: '', secrets: writes.map((w) => ({ ...w, ttlSeconds: 0 })) });
      return written.map((s) => ({ coordinate: s.coordinate, version: s.version }));
    },
    async writeNewSecrets(workspaceId, ownerId, writeId, writes) {
      const { secrets: written } = await secrets.writeSecrets({ workspaceId, ownerId, ownerWorkspaceId: '', writeId, secrets: writes.map((w) => ({ ...w, ttlSeconds: 0 })) });
      return written.map((s) => s.coordinate);
    },
  };
}
