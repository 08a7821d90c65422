import { configV1 } from '@coffer/contracts';
import { defineService, type CallContext, type ServiceRegistration } from '@coffer/rpc';
import type { ActorType } from './domain/actor.decider';
import type { ActorView, Caller, ConfigService, DefinitionView } from './config.service';
import { withRequestBounds } from './request-bounds';
import { createScopeGuard } from './scope';
import { WEBHOOK_DEFINITION_ID } from './webhook-spec';

function callerOf(ctx: CallContext): Caller {
  const traceparent = ctx.metadata.get('traceparent')[0];
  return { subject: ctx.principal?.subject ?? 'anonymous', traceparent: typeof traceparent === 'string' ? traceparent : undefined };
}

/**
 * Who started an OAuth flow, as precisely as the token says: kind, organization, workspace and
 * subject. Only the very same caller may complete it.
 */
function flowCallerOf(ctx: CallContext): Caller & { key: string } {
  const p = ctx.principal;
  return { ...callerOf(ctx), key: JSON.stringify([p?.kind ?? '', p?.organizationId ?? '', p?.workspaceId ?? '', p?.subject ?? '']) };
}

function actorTypeOf(t: configV1.ActorType): ActorType | undefined {
  if (t === configV1.ActorType.ACTOR_TYPE_SOURCE) return 'source';
  if (t === configV1.ActorType.ACTOR_TYPE_DESTINATION) return 'destination';
  return undefined;
}

function protoActorType(t: ActorType): configV1.ActorType {
  return t === 'source' ? configV1.ActorType.ACTOR_TYPE_SOURCE : configV1.ActorType.ACTOR_TYPE_DESTINATION;
}

/** The workspace a check/discover runs for: the one requested, or a scoped or widget token's own. */
function checkWorkspaceOf(ctx: CallContext, requested: string): string {
  const p = ctx.principal;
  if (!requested && p && (p.kind === 'scoped' || p.kind === 'widget') && p.workspaceId) return p.workspaceId;
  return requested;
}

const actorOut = (a: ActorView): configV1.Actor => ({ ...a, actorType: protoActorType(a.actorType) });
const webhookOut = (a: ActorView): configV1.WebhookConfig => ({ webhookId: a.actorId, workspaceId: a.workspaceId, name: a.name, configJson: a.configJson, version: a.version });
const definitionOut = (d: DefinitionView): configV1.ConnectorDefinition => ({ ...d, actorType: protoActorType(d.actorType) });

/** gRPC handlers of coffer.config.v1.ConfigService, each with the permission it needs. */
export function configGrpcService(service: ConfigService): ServiceRegistration {
  // Organizations' tokens reach only their own organization's workspaces, scoped tokens only their one workspace.
  const guard = createScopeGuard(service);
  // Ids and short text fields are checked before any handler looks anything up.
  return defineService(configV1.ConfigServiceService, 'coffer.config.v1.ConfigService', withRequestBounds({
    createWorkspace: {
      permission: 'config.write',
      handler: async (req, ctx) => ({ workspace: await service.createWorkspace({ name: req.name, organizationId: guard.organizationForNewWorkspace(ctx, req.organizationId), requestId: req.requestId }, callerOf(ctx)) }),
    },
    getWorkspace: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        return { workspace: await service.getWorkspace(req.workspaceId) };
      },
    },
    provisionWorkspace: {
      permission: 'config.provision',
      tokenKinds: ['service'],
      handler: async (req, ctx) => service.provisionWorkspace(req, callerOf(ctx)),
    },
    registerConnectorDefinition: {
      permission: 'config.catalog',
      handler: async (req, ctx) => ({
        definition: definitionOut(
          await service.registerDefinition(
            { name: req.name, actorType: actorTypeOf(req.actorType), connector: req.connector, specJson: req.specJson, requestId: req.requestId },
            callerOf(ctx),
          ),
        ),
      }),
    },
    getConnectorDefinition: { permission: 'config.read', handler: async (req) => ({ definition: definitionOut(await service.getDefinition(req.definitionId)) }) },
    createActor: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        return { actor: actorOut(await service.createActor(req, callerOf(ctx))) };
      },
    },
    getActor: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.actorId);
        return { actor: actorOut(await service.getActor(req.actorId)) };
      },
    },
    updateActor: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.actorId);
        return { actor: actorOut(await service.updateActor(req, callerOf(ctx))) };
      },
    },
    deleteActor: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.actorId);
        await service.deleteActor(req, callerOf(ctx));
        return {};
      },
    },
    createConnection: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        return { connection: await service.createConnection(req, callerOf(ctx)) };
      },
    },
    getConnection: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.connection(ctx, req.connectionId);
        return { connection: await service.getConnection(req.connectionId) };
      },
    },
    requestSync: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.connection(ctx, req.connectionId);
        return { jobId: await service.requestSync(req.connectionId, callerOf(ctx), req.requestId) };
      },
    },
    getSyncPlan: { permission: 'config.sync_plan', handler: async (req) => ({ plan: await service.getSyncPlan(req.connectionId) }) },
    getCredentialRevocation: { permission: 'config.sync_plan', handler: async (req) => service.getCredentialRevocation(req.actorId) },
    completeCredentialRevocation: {
      permission: 'config.sync_plan',
      handler: async (req) => {
        await service.completeCredentialRevocation(req.actorId);
        return {};
      },
    },
    startOAuthFlow: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        return service.startOAuthFlow(req, flowCallerOf(ctx));
      },
    },
    completeOAuthFlow: {
      permission: 'config.write',
      handler: async (req, ctx) => ({ actor: actorOut(await service.completeOAuthFlow(req, flowCallerOf(ctx))) }),
    },
    listWorkspaces: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        const page = await service.listWorkspaces(req.page, guard.listFilter(ctx));
        return { workspaces: page.items, nextPageToken: page.nextPageToken };
      },
    },
    updateWorkspace: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        return { workspace: await service.updateWorkspace(req, callerOf(ctx)) };
      },
    },
    deleteWorkspace: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId, { organizationWide: true });
        return { actorsDeleted: await service.deleteWorkspace(req, callerOf(ctx)) };
      },
    },
    listConnectorDefinitions: {
      permission: 'config.read',
      handler: async (req) => {
        const page = await service.listDefinitions({ actorType: actorTypeOf(req.actorType), page: req.page });
        return { definitions: page.items.map(definitionOut), nextPageToken: page.nextPageToken };
      },
    },
    updateConnectorDefinition: {
      permission: 'config.catalog',
      handler: async (req, ctx) => ({ definition: definitionOut(await service.updateDefinition(req, callerOf(ctx))) }),
    },
    deleteConnectorDefinition: {
      permission: 'config.catalog',
      handler: async (req, ctx) => {
        await service.deleteDefinition(req, callerOf(ctx));
        return {};
      },
    },
    listActors: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        const page = await service.listActors({ workspaceId: req.workspaceId, actorType: actorTypeOf(req.actorType), page: req.page });
        return { actors: page.items.map(actorOut), nextPageToken: page.nextPageToken };
      },
    },
    listConnections: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        const page = await service.listConnections(req);
        return { connections: page.items, nextPageToken: page.nextPageToken };
      },
    },
    updateConnection: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.connection(ctx, req.connectionId);
        return { connection: await service.updateConnection(req, callerOf(ctx)) };
      },
    },
    checkConfig: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        const workspaceId = checkWorkspaceOf(ctx, req.workspaceId);
        if (workspaceId) await guard.workspace(ctx, workspaceId);
        const r = await service.runCheck('check', { ...req, workspaceId }, callerOf(ctx));
        return { jobId: r.jobId, succeeded: r.succeeded, message: r.message };
      },
    },
    discoverSchema: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        const workspaceId = checkWorkspaceOf(ctx, req.workspaceId);
        if (workspaceId) await guard.workspace(ctx, workspaceId);
        return service.runCheck('discover', { ...req, workspaceId }, callerOf(ctx));
      },
    },
    createWebhookConfig: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        return {
          webhook: webhookOut(await service.createActor(
            { workspaceId: req.workspaceId, definitionId: WEBHOOK_DEFINITION_ID, name: req.name, configJson: req.configJson, requestId: req.requestId },
            callerOf(ctx),
            'webhook',
          )),
        };
      },
    },
    getWebhookConfig: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.webhookId, 'webhook_id');
        return { webhook: webhookOut(await service.getActor(req.webhookId, 'webhook')) };
      },
    },
    listWebhookConfigs: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.workspace(ctx, req.workspaceId);
        const page = await service.listActors({ workspaceId: req.workspaceId, page: req.page }, 'webhook');
        return { webhooks: page.items.map(webhookOut), nextPageToken: page.nextPageToken };
      },
    },
    updateWebhookConfig: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.webhookId, 'webhook_id');
        return {
          webhook: webhookOut(
            await service.updateActor({ actorId: req.webhookId, expectedVersion: req.expectedVersion, name: req.name, configJson: req.configJson }, callerOf(ctx), 'webhook'),
          ),
        };
      },
    },
    deleteWebhookConfig: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.webhookId, 'webhook_id');
        await service.deleteActor({ actorId: req.webhookId, expectedVersion: req.expectedVersion }, callerOf(ctx), 'webhook');
        return {};
      },
    },
    proxyRequest: {
      permission: 'config.proxy',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.actorId);
        // A scoped or widget token's own workspace stands in for an empty workspace_id.
        return service.proxyRequest({ ...req, workspaceId: checkWorkspaceOf(ctx, req.workspaceId) });
      },
    },
    deleteConnection: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.connection(ctx, req.connectionId);
        await service.deleteConnection(req, callerOf(ctx));
        return {};
      },
    },
    listActorSecretVersions: {
      permission: 'config.read',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.actorId);
        return { secrets: await service.listActorSecretVersions(req) };
      },
    },
    rollbackActorSecret: {
      permission: 'config.write',
      handler: async (req, ctx) => {
        await guard.actor(ctx, req.actorId);
        const { actor, secret } = await service.rollbackActorSecret(req, callerOf(ctx));
        return { actor: actorOut(actor), secret };
      },
    },
  }));
}
