import { createOnce } from '@coffer/contracts';
import type { EventStore, RecordedEvent } from '@coffer/event-store';
import { mask } from '@coffer/secret-json';
import type { ActorView, Caller, ConnectionView, DefinitionView, Kind, WorkspaceView } from './config.service';
import type { ActorCreatedData, ActorType } from './domain/actor.decider';
import type { ConnectionCreatedData, SyncRequestedData } from './domain/connection.decider';
import type { ConnectorDefinitionRegisteredData, WorkspaceCreatedData } from './domain/workspace.decider';

type WorkspaceInput = { name: string; organizationId?: string; externalUserId?: string };
type DefinitionInput = { name: string; actorType: ActorType | undefined; connector: string; specJson: string };
type ActorInput = { workspaceId: string; definitionId: string; name: string; configJson: string };
type ConnectionInput = { workspaceId: string; sourceId: string; destinationId: string; name: string };
type Keyed<T> = T & { requestId?: string };

/** The config service's creates, each taking the id of what it makes (a fresh one by default). */
export interface RawCreates {
  createWorkspace(input: WorkspaceInput, caller: Caller, workspaceId?: string): Promise<WorkspaceView>;
  registerDefinition(input: DefinitionInput, caller: Caller, definitionId?: string): Promise<DefinitionView>;
  createActor(input: ActorInput, caller: Caller, kind?: Kind, actorId?: string): Promise<ActorView>;
  createConnection(input: ConnectionInput, caller: Caller, connectionId?: string): Promise<ConnectionView>;
  requestSync(connectionId: string, caller: Caller, jobId?: string): Promise<string>;
}

/**
 * The creates made idempotent by an optional request_id: the id of the new workspace, definition,
 * actor, connection or sync job is derived from (scope, method, key), so the entity's own first event
 * records the key, and a repeat answers the first result read back from that event. Scopes are the
 * tenant: the organization for workspaces, the catalog for definitions, the workspace for actors and
 * connections, the connection for syncs.
 */
export function idempotentCreates(raw: RawCreates, deps: { store: EventStore; newId: () => string }) {
  const { store, newId } = deps;

  async function firstEvent(streamId: string): Promise<RecordedEvent | undefined> {
    return (await store.readStream(streamId)).events[0];
  }

  /** The latest spec of a definition, from its stream: still there when the definition was deleted since. */
  async function specOf(definitionId: string): Promise<unknown> {
    const { events } = await store.readStream(`definition-${definitionId}`);
    const latest = events.findLast((e) => (e.data as { spec?: unknown }).spec !== undefined);
    // Without a spec the answer could not be masked: better no answer than a coordinate in one.
    if (!latest) throw new Error(`definition ${definitionId} has no spec in its stream`);
    return (latest.data as { spec: unknown }).spec;
  }

  return {
    /** Creates a workspace; a repeated request_id of the same organization answers the first one. */
    createWorkspace: (input: Keyed<WorkspaceInput>, caller: Caller) =>
      createOnce({
        requestId: input.requestId,
        scope: input.organizationId ?? '',
        method: 'CreateWorkspace',
        newId,
        firstResult: async (id): Promise<WorkspaceView | undefined> => {
          const d = (await firstEvent(`workspace-${id}`))?.data as WorkspaceCreatedData | undefined;
          return d && { workspaceId: d.workspaceId, name: d.name, version: 1, organizationId: d.organizationId ?? '', externalUserId: d.externalUserId ?? '' };
        },
        create: (id) => raw.createWorkspace(input, caller, id),
      }),

    /** Registers a connector definition; a repeated request_id answers the first one. */
    registerDefinition: (input: Keyed<DefinitionInput>, caller: Caller) =>
      createOnce({
        requestId: input.requestId,
        scope: 'catalog',
        method: 'RegisterConnectorDefinition',
        newId,
        firstResult: async (id): Promise<DefinitionView | undefined> => {
          const d = (await firstEvent(`definition-${id}`))?.data as ConnectorDefinitionRegisteredData | undefined;
          return d && { definitionId: d.definitionId, name: d.name, actorType: d.actorType, connector: d.connector, specJson: JSON.stringify(d.spec), version: 1 };
        },
        create: (id) => raw.registerDefinition(input, caller, id),
      }),

    /** Creates a source, destination or webhook; a repeated request_id in the same workspace answers the first one, masked. */
    createActor: (input: Keyed<ActorInput>, caller: Caller, kind: Kind = 'connector') =>
      createOnce({
        requestId: input.requestId,
        scope: input.workspaceId.toLowerCase(),
        method: kind === 'webhook' ? 'CreateWebhookConfig' : 'CreateActor',
        newId,
        firstResult: async (id): Promise<ActorView | undefined> => {
          const d = (await firstEvent(`actor-${id}`))?.data as ActorCreatedData | undefined;
          if (!d) return undefined;
          const configJson = JSON.stringify(mask(await specOf(d.definitionId), d.partialConfig));
          return { actorId: d.actorId, workspaceId: d.workspaceId, definitionId: d.definitionId, actorType: d.actorType, name: d.name, configJson, version: 1 };
        },
        // A repeat racing the first writes its secrets, loses the append and shreds them (createActor's compensation).
        create: (id) => raw.createActor(input, caller, kind, id),
      }),

    /** Creates a connection; a repeated request_id in the same workspace answers the first one. */
    createConnection: (input: Keyed<ConnectionInput>, caller: Caller) =>
      createOnce({
        requestId: input.requestId,
        scope: input.workspaceId.toLowerCase(),
        method: 'CreateConnection',
        newId,
        firstResult: async (id): Promise<ConnectionView | undefined> => {
          const d = (await firstEvent(`connection-${id}`))?.data as ConnectionCreatedData | undefined;
          return d && { connectionId: d.connectionId, workspaceId: d.workspaceId, sourceId: d.sourceId, destinationId: d.destinationId, name: d.name, version: 1 };
        },
        create: (id) => raw.createConnection(input, caller, id),
      }),

    /**
     * Requests a sync; a repeated request_id for the same connection answers the first job id. The job's
     * SyncRequested is appended to the connection's stream at its expected version, so a racing repeat
     * conflicts and then finds the winner's job there.
     */
    requestSync: (connectionId: string, caller: Caller, requestId?: string) =>
      createOnce({
        requestId,
        scope: connectionId.toLowerCase(),
        method: 'RequestSync',
        newId,
        firstResult: async (jobId): Promise<string | undefined> => {
          const { events } = await store.readStream(`connection-${connectionId}`);
          return events.some((e) => e.type === 'SyncRequested' && (e.data as unknown as SyncRequestedData).jobId === jobId) ? jobId : undefined;
        },
        create: (jobId) => raw.requestSync(connectionId, caller, jobId),
      }),
  };
}
