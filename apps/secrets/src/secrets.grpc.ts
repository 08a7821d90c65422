import { CofferError, secretsV1 } from '@coffer/contracts';
import { defineService, type CallContext, type ServiceRegistration } from '@coffer/rpc';
import type { Actor, SecretsService } from './secrets.service';

const MAX_REASON_CHARS = 200;

function actorOf(ctx: CallContext): Actor {
  const onBehalfOf = ctx.metadata.get('coffer-on-behalf-of')[0];
  const traceparent = ctx.metadata.get('traceparent')[0];
  return {
    subject: ctx.principal?.subject ?? 'anonymous',
    onBehalfOf: typeof onBehalfOf === 'string' ? onBehalfOf.slice(0, 200) : undefined,
    traceparent: typeof traceparent === 'string' ? traceparent : undefined,
  };
}

/** gRPC handlers of coffer.secrets.v1.SecretsService, each with the permission it needs. */
export function secretsGrpcService(service: SecretsService): ServiceRegistration {
  return defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', {
    writeSecrets: {
      permission: 'secrets.write',
      handler: async (req, ctx) => ({
        secrets: await service.writeSecrets(
          req.workspaceId,
          req.secrets.map((s) => ({ baseCoordinate: s.baseCoordinate, expectedVersion: s.expectedVersion, value: s.value, ttlSeconds: s.ttlSeconds })),
          actorOf(ctx),
          { ownerId: req.ownerId, ownerWorkspaceId: req.ownerWorkspaceId },
        ),
      }),
    },
    hydrateConfig: {
      permission: 'secrets.hydrate',
      handler: async (req, ctx) => {
        // The reason is recorded and published with the hydration: bounded, and never echoed.
        if (req.reason.length > MAX_REASON_CHARS) throw new CofferError('invalid_argument', `reason must be at most ${MAX_REASON_CHARS} characters`, [{ field: 'reason', reason: 'too long' }]);
        return { configJson: await service.hydrateConfig(req.workspaceId, req.partialConfigJson, req.reason, actorOf(ctx), req.ownerId) };
      },
    },
    deleteSecrets: {
      permission: 'secrets.delete',
      handler: async (req, ctx) => ({ destroyed: await service.deleteSecrets(req.workspaceId, req.coordinates, actorOf(ctx), req.ownerId) }),
    },
    listSecretVersions: {
      permission: 'secrets.list',
      handler: async (req) => ({ versions: await service.listSecretVersions(req.workspaceId, req.baseCoordinate) }),
    },
    deleteWorkspaceSecrets: {
      permission: 'secrets.delete',
      handler: async (req, ctx) => ({ destroyedCount: await service.deleteWorkspaceSecrets(req.workspaceId, actorOf(ctx)) }),
    },
    rollbackSecret: {
      permission: 'secrets.write',
      handler: async (req, ctx) => ({
        secret: await service.rollbackSecret(req.workspaceId, req.baseCoordinate, req.toVersion, req.expectedVersion, actorOf(ctx)),
      }),
    },
    rotateKeyEncryptionKey: {
      permission: 'secrets.admin',
      handler: async (req, ctx) => service.rotateKek(req.resumeOnly, actorOf(ctx)),
    },
    retireKeyEncryptionKeyVersion: {
      permission: 'secrets.admin',
      handler: async (req, ctx) => {
        await service.retireKek(req.kekVersion, actorOf(ctx));
        return {};
      },
    },
    listKeyEncryptionKeyVersions: {
      permission: 'secrets.admin',
      handler: async () => service.listKekVersions(),
    },
  });
}
