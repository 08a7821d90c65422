import { CofferError } from '@coffer/contracts';

/** Links a source to a destination in one workspace. */
export interface CreateConnection {
  type: 'CreateConnection';
  connectionId: string;
  workspaceId: string;
  sourceId: string;
  destinationId: string;
  name: string;
  now: string;
}

/** Asks a sync worker to run the connection once. */
export interface RequestSync {
  type: 'RequestSync';
  jobId: string;
  /** Whether the stream holds this job already: a retried RequestSync derives the same job id. */
  alreadyRequested: boolean;
  now: string;
}

/** Renames a connection. */
export interface RenameConnection {
  type: 'RenameConnection';
  name: string;
  now: string;
}

/** Deletes a connection; no sync can be requested for it afterwards. */
export interface DeleteConnection {
  type: 'DeleteConnection';
  now: string;
}

export type ConnectionCommand = CreateConnection | RequestSync | RenameConnection | DeleteConnection;

export interface ConnectionCreatedData {
  connectionId: string;
  workspaceId: string;
  sourceId: string;
  destinationId: string;
  name: string;
  createdAt: string;
}

export interface SyncRequestedData {
  jobId: string;
  connectionId: string;
  workspaceId: string;
  requestedAt: string;
}

export interface ConnectionRenamedData {
  connectionId: string;
  name: string;
  renamedAt: string;
}

export interface ConnectionDeletedData {
  connectionId: string;
  workspaceId: string;
  deletedAt: string;
}

export type ConnectionEvent =
  | { type: 'ConnectionCreated'; data: ConnectionCreatedData }
  | { type: 'SyncRequested'; data: SyncRequestedData }
  | { type: 'ConnectionRenamed'; data: ConnectionRenamedData }
  | { type: 'ConnectionDeleted'; data: ConnectionDeletedData };

export interface ConnectionState {
  exists: boolean;
  deleted: boolean;
  connectionId: string | null;
  workspaceId: string | null;
  sourceId: string | null;
  destinationId: string | null;
  name: string;
  syncsRequested: number;
}

/** The state of a connection that does not exist yet. */
export function initialState(): ConnectionState {
  return { exists: false, deleted: false, connectionId: null, workspaceId: null, sourceId: null, destinationId: null, name: '', syncsRequested: 0 };
}

/** Decides the events of a command, or refuses it. */
export function decide(command: ConnectionCommand, state: ConnectionState): ConnectionEvent[] {
  switch (command.type) {
    case 'CreateConnection':
      if (state.exists) throw new CofferError('failed_precondition', 'the connection already exists');
      if (command.sourceId === command.destinationId) {
        throw new CofferError('invalid_argument', 'destination_id must differ from source_id', [{ field: 'destination_id', reason: 'same as source' }]);
      }
      return [
        {
          type: 'ConnectionCreated',
          data: {
            connectionId: command.connectionId,
            workspaceId: command.workspaceId,
            sourceId: command.sourceId,
            destinationId: command.destinationId,
            name: command.name,
            createdAt: command.now,
          },
        },
      ];
    case 'RenameConnection':
      if (!state.exists || state.deleted) throw new CofferError('not_found', 'no such connection');
      return [{ type: 'ConnectionRenamed', data: { connectionId: state.connectionId!, name: command.name, renamedAt: command.now } }];
    case 'DeleteConnection':
      if (!state.exists || state.deleted) throw new CofferError('not_found', 'no such connection');
      return [{ type: 'ConnectionDeleted', data: { connectionId: state.connectionId!, workspaceId: state.workspaceId!, deletedAt: command.now } }];
    case 'RequestSync':
      if (!state.exists || state.deleted) throw new CofferError('not_found', 'no such connection');
      if (command.alreadyRequested) throw new CofferError('version_conflict', 'this sync was requested already');
      return [{ type: 'SyncRequested', data: { jobId: command.jobId, connectionId: state.connectionId!, workspaceId: state.workspaceId!, requestedAt: command.now } }];
  }
}

/** Applies one event to the state. */
export function evolve(state: ConnectionState, event: ConnectionEvent): ConnectionState {
  switch (event.type) {
    case 'ConnectionCreated':
      return {
        exists: true,
        deleted: false,
        connectionId: event.data.connectionId,
        workspaceId: event.data.workspaceId,
        sourceId: event.data.sourceId,
        destinationId: event.data.destinationId,
        name: event.data.name,
        syncsRequested: 0,
      };
    case 'SyncRequested':
      return { ...state, syncsRequested: state.syncsRequested + 1 };
    case 'ConnectionRenamed':
      return { ...state, name: event.data.name };
    case 'ConnectionDeleted':
      return { ...state, deleted: true };
  }
}
