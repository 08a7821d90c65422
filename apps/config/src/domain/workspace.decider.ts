import { CofferError } from '@coffer/contracts';
import type { ActorType } from './actor.decider';

/** Creates a workspace: the tenant boundary of actors, connections and secrets. */
export interface CreateWorkspace {
  type: 'CreateWorkspace';
  workspaceId: string;
  name: string;
  /** The owning organization; empty for operator-made workspaces outside any organization. */
  organizationId: string;
  /** The organization's end user this workspace is for, if any. */
  externalUserId: string;
  now: string;
}

/** Renames a workspace. */
export interface RenameWorkspace {
  type: 'RenameWorkspace';
  name: string;
  now: string;
}

/** Deletes a workspace; its actors and connections are deleted in the same transaction. */
export interface DeleteWorkspace {
  type: 'DeleteWorkspace';
  now: string;
}

/** Registers a connector definition: a name, the connector that runs it, and its JSON Schema spec. */
export interface RegisterConnectorDefinition {
  type: 'RegisterConnectorDefinition';
  definitionId: string;
  name: string;
  actorType: ActorType;
  connector: string;
  spec: unknown;
  now: string;
}

/** Records a new version of a definition's spec (and name). */
export interface UpdateConnectorDefinition {
  type: 'UpdateConnectorDefinition';
  name: string;
  spec: unknown;
  now: string;
}

/** Deletes a definition no actor uses any more. */
export interface DeleteConnectorDefinition {
  type: 'DeleteConnectorDefinition';
  /** How many live actors use it; must be 0. */
  actorsUsingIt: number;
  now: string;
}

export type CatalogCommand = CreateWorkspace | RenameWorkspace | DeleteWorkspace | RegisterConnectorDefinition | UpdateConnectorDefinition | DeleteConnectorDefinition;

export interface WorkspaceCreatedData {
  workspaceId: string;
  name: string;
  createdAt: string;
  /** Absent on workspaces created before organizations existed. */
  organizationId?: string;
  externalUserId?: string;
}

export interface WorkspaceRenamedData {
  workspaceId: string;
  name: string;
  renamedAt: string;
}

export interface WorkspaceDeletedData {
  workspaceId: string;
  deletedAt: string;
}

export interface ConnectorDefinitionRegisteredData {
  definitionId: string;
  name: string;
  actorType: ActorType;
  connector: string;
  spec: unknown;
  registeredAt: string;
}

export interface ConnectorDefinitionUpdatedData {
  definitionId: string;
  name: string;
  spec: unknown;
  updatedAt: string;
}

export interface ConnectorDefinitionDeletedData {
  definitionId: string;
  deletedAt: string;
}

export type CatalogEvent =
  | { type: 'ConnectorDefinitionDeleted'; data: ConnectorDefinitionDeletedData }
  | { type: 'WorkspaceCreated'; data: WorkspaceCreatedData }
  | { type: 'WorkspaceRenamed'; data: WorkspaceRenamedData }
  | { type: 'WorkspaceDeleted'; data: WorkspaceDeletedData }
  | { type: 'ConnectorDefinitionRegistered'; data: ConnectorDefinitionRegisteredData }
  | { type: 'ConnectorDefinitionUpdated'; data: ConnectorDefinitionUpdatedData };

/** A workspace or a definition stream. */
export interface CatalogState {
  status: 'absent' | 'active' | 'deleted';
  id: string | null;
}

/** The state of a workspace or definition that does not exist yet. */
export function initialState(): CatalogState {
  return { status: 'absent', id: null };
}

/** Decides the events of a command, or refuses it. */
export function decide(command: CatalogCommand, state: CatalogState): CatalogEvent[] {
  switch (command.type) {
    case 'CreateWorkspace':
      if (state.status !== 'absent') throw new CofferError('failed_precondition', 'the workspace already exists');
      return [
        {
          type: 'WorkspaceCreated',
          data: { workspaceId: command.workspaceId, name: command.name, createdAt: command.now, organizationId: command.organizationId, externalUserId: command.externalUserId },
        },
      ];
    case 'RegisterConnectorDefinition': {
      if (state.status !== 'absent') throw new CofferError('failed_precondition', 'the definition already exists');
      const { definitionId, name, actorType, connector, spec, now } = command;
      return [{ type: 'ConnectorDefinitionRegistered', data: { definitionId, name, actorType, connector, spec, registeredAt: now } }];
    }
    case 'RenameWorkspace':
      if (state.status !== 'active') throw new CofferError('not_found', 'no such workspace');
      return [{ type: 'WorkspaceRenamed', data: { workspaceId: state.id!, name: command.name, renamedAt: command.now } }];
    case 'DeleteWorkspace':
      if (state.status !== 'active') throw new CofferError('not_found', 'no such workspace');
      return [{ type: 'WorkspaceDeleted', data: { workspaceId: state.id!, deletedAt: command.now } }];
    case 'DeleteConnectorDefinition':
      if (state.status !== 'active') throw new CofferError('not_found', 'no such connector definition');
      if (command.actorsUsingIt > 0) throw new CofferError('failed_precondition', `${command.actorsUsingIt} sources or destinations still use this definition`);
      return [{ type: 'ConnectorDefinitionDeleted', data: { definitionId: state.id!, deletedAt: command.now } }];
    case 'UpdateConnectorDefinition':
      if (state.status !== 'active') throw new CofferError('not_found', 'no such connector definition');
      return [{ type: 'ConnectorDefinitionUpdated', data: { definitionId: state.id!, name: command.name, spec: command.spec, updatedAt: command.now } }];
  }
}

/** Applies one event to the state. */
export function evolve(state: CatalogState, event: CatalogEvent): CatalogState {
  switch (event.type) {
    case 'WorkspaceCreated':
      return { status: 'active', id: event.data.workspaceId };
    case 'ConnectorDefinitionRegistered':
      return { status: 'active', id: event.data.definitionId };
    case 'WorkspaceDeleted':
    case 'ConnectorDefinitionDeleted':
      return { ...state, status: 'deleted' };
    case 'WorkspaceRenamed':
    case 'ConnectorDefinitionUpdated':
      return state;
  }
}
