import { CofferError } from '@coffer/contracts';

/** Creates a workspace: the tenant boundary of actors, connections and secrets. */
export interface CreateWorkspace {
  type: 'CreateWorkspace';
  workspaceId: string;
  name: string;
  now: string;
}

/** Registers a connector definition: a name, the connector that runs it, and its JSON Schema spec. */
export interface RegisterConnectorDefinition {
  type: 'RegisterConnectorDefinition';
  definitionId: string;
  name: string;
  actorType: 'source' | 'destination';
  connector: string;
  spec: unknown;
  now: string;
}

export interface WorkspaceCreatedData {
  workspaceId: string;
  name: string;
  createdAt: string;
}

export interface ConnectorDefinitionRegisteredData {
  definitionId: string;
  name: string;
  actorType: 'source' | 'destination';
  connector: string;
  spec: unknown;
  registeredAt: string;
}

export type CatalogEvent =
  | { type: 'WorkspaceCreated'; data: WorkspaceCreatedData }
  | { type: 'ConnectorDefinitionRegistered'; data: ConnectorDefinitionRegisteredData };

/** Whether the stream (one workspace or one definition) exists. */
export interface CatalogState {
  exists: boolean;
}

/** The state of a workspace or definition that does not exist yet. */
export function initialState(): CatalogState {
  return { exists: false };
}

/** Decides the events of a command, or refuses it. */
export function decide(command: CreateWorkspace | RegisterConnectorDefinition, state: CatalogState): CatalogEvent[] {
  if (state.exists) throw new CofferError('failed_precondition', 'it already exists');
  if (command.type === 'CreateWorkspace') {
    return [{ type: 'WorkspaceCreated', data: { workspaceId: command.workspaceId, name: command.name, createdAt: command.now } }];
  }
  const { definitionId, name, actorType, connector, spec, now } = command;
  return [{ type: 'ConnectorDefinitionRegistered', data: { definitionId, name, actorType, connector, spec, registeredAt: now } }];
}

/** Applies one event to the state. */
export function evolve(_state: CatalogState, _event: CatalogEvent): CatalogState {
  return { exists: true };
}
