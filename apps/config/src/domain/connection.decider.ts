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
  now: string;
}

export type ConnectionCommand = CreateConnection | RequestSync;

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

export type ConnectionEvent =
  | { type: 'ConnectionCreated'; data: ConnectionCreatedData }
  | { type: 'SyncRequested'; data: SyncRequestedData };

export interface ConnectionState {
  exists: boolean;
  connectionId: string | null;
  workspaceId: string | null;
  sourceId: string | null;
  destinationId: string | null;
  name: string;
  syncsRequested: number;
}

/** The state of a connection that does not exist yet. */
export function initialState(): ConnectionState {
  return { exists: false, connectionId: null, workspaceId: null, sourceId: null, destinationId: null, name: '', syncsRequested: 0 };
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
    case 'RequestSync':
      if (!state.exists) throw new CofferError('not_found', 'no such connection');
      return [{ type: 'SyncRequested', data: { jobId: command.jobId, connectionId: state.connectionId!, workspaceId: state.workspaceId!, requestedAt: command.now } }];
  }
}

/** Applies one event to the state. */
export function evolve(state: ConnectionState, event: ConnectionEvent): ConnectionState {
  switch (event.type) {
    case 'ConnectionCreated':
      return {
        exists: true,
        connectionId: event.data.connectionId,
        workspaceId: event.data.workspaceId,
        sourceId: event.data.sourceId,
        destinationId: event.data.destinationId,
        name: event.data.name,
        syncsRequested: 0,
      };
    case 'SyncRequested':
      return { ...state, syncsRequested: state.syncsRequested + 1 };
  }
}
