import { CofferError, EPHEMERAL_WORKSPACE_ID, secretsV1 } from '@coffer/contracts';
import { createKeyedLimiter, createKeyedRateBudget, defineService, type CallContext, type KeyedLimiter, type KeyedRateBudget, type ServiceRegistration } from '@coffer/rpc';
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

/**
 * How many calls of one workspace run at once (writes and hydrates apart), how many may wait for a
 * turn, and how many secret versions one workspace may write per second (0: no rate).
 */
export interface WorkspaceConcurrency {
  writesPerWorkspace: number;
  hydratesPerWorkspace: number;
  queuedPerWorkspace: number;
  writeRatePerWorkspace?: number;
  /** Versions one workspace may write at once after a quiet period (the most one request may carry). */
  writeBurstPerWorkspace?: number;
}

// Check and discover secrets of every workspace share the ephemeral workspace: one lane for all of
// them would let one tenant's checks hold everyone's. They take turns per `coffer-on-behalf-of`
// when the caller names it, and are otherwise left to the caller's own bound (config's per caller).
function laneOf(workspaceId: string, ctx: CallContext): string | undefined {
  if (workspaceId !== EPHEMERAL_WORKSPACE_ID) return workspaceId;
  const onBehalfOf = ctx.metadata.get('coffer-on-behalf-of')[0];
  return typeof onBehalfOf === 'string' && onBehalfOf.length > 0 ? `${workspaceId}/${onBehalfOf.slice(0, 200)}` : undefined;
}

const inLane = <T>(limiter: KeyedLimiter, lane: string | undefined, work: () => Promise<T>, signal?: AbortSignal): Promise<T> =>
  lane === undefined ? work() : limiter.run(lane, work, signal);

// Inside its turn, a write first takes its secret versions from the workspace's rate budget: one
// workspace writing without pause would otherwise hold a core of the machine every other tenant's
// hydrates run on (the turn bounds how many writes run at once, not how often they come).
const paid = async (budget: KeyedRateBudget | undefined, lane: string | undefined, versions: number, ctx: CallContext): Promise<void> => {
  if (budget && lane !== undefined) await budget.take(lane, versions, { deadline: ctx.deadline, signal: ctx.signal });
};

/** gRPC handlers of coffer.secrets.v1.SecretsService, each with the permission it needs. */
export function secretsGrpcService(
  service: SecretsService,
  concurrency: WorkspaceConcurrency = { writesPerWorkspace: 1, hydratesPerWorkspace: 4, queuedPerWorkspace: 8 },
): ServiceRegistration {
  const writes = createKeyedLimiter({ concurrent: concurrency.writesPerWorkspace, queued: concurrency.queuedPerWorkspace, per: 'workspace' });
  const hydrates = createKeyedLimiter({ concurrent: concurrency.hydratesPerWorkspace, queued: concurrency.queuedPerWorkspace, per: 'workspace' });
  const writeRate = concurrency.writeRatePerWorkspace
    ? createKeyedRateBudget({ perSecond: concurrency.writeRatePerWorkspace, burst: Math.max(1, concurrency.writeBurstPerWorkspace ?? 100), per: 'workspace', units: 'secret versions' })
    : undefined;
  return defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', {
    writeSecrets: {
      permission: 'secrets.write',
      handler: async (req, ctx) => {
        const lane = laneOf(req.workspaceId === EPHEMERAL_WORKSPACE_ID && req.ownerWorkspaceId ? req.ownerWorkspaceId : req.workspaceId, ctx);
        return {
        secrets: await inLane(
          writes,
          lane,
          async () => {
            await paid(writeRate, lane, req.secrets.length, ctx);
            return service.writeSecrets(
              req.workspaceId,
              req.secrets.map((s) => ({ baseCoordinate: s.baseCoordinate, expectedVersion: s.expectedVersion, value: s.value, ttlSeconds: s.ttlSeconds })),
              actorOf(ctx),
              { ownerId: req.ownerId, ownerWorkspaceId: req.ownerWorkspaceId, writeId: req.writeId },
              {},
              ctx.signal,
            );
          },
          ctx.signal,
        ),
        };
      },
    },
    hydrateConfig: {
      permission: 'secrets.hydrate',
      handler: async (req, ctx) => {
        // The reason is recorded and published with the hydration: bounded, and never echoed.
        if (req.reason.length > MAX_REASON_CHARS) throw new CofferError('invalid_argument', `reason must be at most ${MAX_REASON_CHARS} characters`, [{ field: 'reason', reason: 'too long' }]);
        return {
          configJson: await inLane(hydrates, laneOf(req.workspaceId, ctx), () => service.hydrateConfig(req.workspaceId, req.partialConfigJson, req.reason, actorOf(ctx), req.ownerId), ctx.signal),
        };
      },
    },
    deleteSecrets: {
      permission: 'secrets.delete',
      handler: async (req, ctx) => ({ destroyed: await service.deleteSecrets(req.workspaceId, req.coordinates, actorOf(ctx), req.ownerId, req.writeId) }),
    },
    listSecretVersions: {
      permission: 'secrets.list',
      handler: async (req) => ({ versions: await service.listSecretVersions(req.workspaceId, req.baseCoordinate) }),
    },
    getLatestSecretVersions: {
      permission: 'secrets.list',
      handler: async (req) => ({ versions: await service.latestVersions(req.workspaceId, req.baseCoordinates) }),
    },
    deleteWorkspaceSecrets: {
      permission: 'secrets.delete',
      handler: async (req, ctx) => ({ destroyedCount: await service.deleteWorkspaceSecrets(req.workspaceId, actorOf(ctx)) }),
    },
    rollbackSecret: {
      permission: 'secrets.write',
      handler: async (req, ctx) => ({
        secret: await service.rollbackSecret(req.workspaceId, req.baseCoordinate, req.toVersion, req.expectedVersion, actorOf(ctx), { ownerId: req.ownerId, writeId: req.writeId }),
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
