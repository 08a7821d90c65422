import { CofferError } from '@coffer/contracts';

/** Sources read data, destinations write it; webhooks are the platform's own model with secrets (URL, signing secret, auth). */
export type ActorType = 'source' | 'destination' | 'webhook';

/** Creates a source or destination with an already split (secret-free) configuration. */
export interface CreateActor {
  type: 'CreateActor';
  actorId: string;
  workspaceId: string;
  definitionId: string;
  actorType: ActorType;
  name: string;
  partialConfig: unknown;
  now: string;
}

/** Replaces an actor's name and configuration. */
export interface UpdateActorConfig {
  type: 'UpdateActorConfig';
  name: string;
  partialConfig: unknown;
  /** Secret bases the new config no longer references: shredded at secrets. */
  shredBases: string[];
  now: string;
}

/** Deletes an actor; its secrets are destroyed afterwards. */
export interface DeleteActor {
  type: 'DeleteActor';
  /** Every secret base of the actor: shredded at secrets. */
  shredBases: string[];
  now: string;
}

export type ActorCommand = CreateActor | UpdateActorConfig | DeleteActor;

export interface ActorCreatedData {
  actorId: string;
  workspaceId: string;
  definitionId: string;
  actorType: ActorType;
  name: string;
  /** Secrets are {"_secret": coordinate} references, never values. */
  partialConfig: unknown;
  createdAt: string;
}

export interface ActorConfigUpdatedData {
  actorId: string;
  workspaceId: string;
  name: string;
  partialConfig: unknown;
  shredBases: string[];
  updatedAt: string;
}

export interface ActorDeletedData {
  actorId: string;
  workspaceId: string;
  shredBases: string[];
  deletedAt: string;
}

export type ActorEvent =
  | { type: 'ActorCreated'; data: ActorCreatedData }
  | { type: 'ActorConfigUpdated'; data: ActorConfigUpdatedData }
  | { type: 'ActorDeleted'; data: ActorDeletedData };

export interface ActorState {
  status: 'absent' | 'active' | 'deleted';
  actorId: string | null;
  workspaceId: string | null;
  definitionId: string | null;
  actorType: ActorType | null;
  name: string;
  partialConfig: unknown;
}

/** The state of an actor that does not exist yet. */
export function initialState(): ActorState {
  return { status: 'absent', actorId: null, workspaceId: null, definitionId: null, actorType: null, name: '', partialConfig: null };
}

/** Decides the events of a command, or refuses it. */
export function decide(command: ActorCommand, state: ActorState): ActorEvent[] {
  switch (command.type) {
    case 'CreateActor':
      if (state.status !== 'absent') throw new CofferError('failed_precondition', 'the actor already exists');
      return [
        {
          type: 'ActorCreated',
          data: {
            actorId: command.actorId,
            workspaceId: command.workspaceId,
            definitionId: command.definitionId,
            actorType: command.actorType,
            name: command.name,
            partialConfig: command.partialConfig,
            createdAt: command.now,
          },
        },
      ];
    case 'UpdateActorConfig':
      if (state.status !== 'active') throw new CofferError('not_found', 'no such actor');
      return [
        {
          type: 'ActorConfigUpdated',
          data: {
            actorId: state.actorId!,
            workspaceId: state.workspaceId!,
            name: command.name,
            partialConfig: command.partialConfig,
            shredBases: command.shredBases,
            updatedAt: command.now,
          },
        },
      ];
    case 'DeleteActor':
      if (state.status !== 'active') throw new CofferError('not_found', 'no such actor');
      return [{ type: 'ActorDeleted', data: { actorId: state.actorId!, workspaceId: state.workspaceId!, shredBases: command.shredBases, deletedAt: command.now } }];
  }
}

/** Applies one event to the state. */
export function evolve(state: ActorState, event: ActorEvent): ActorState {
  switch (event.type) {
    case 'ActorCreated':
      return {
        status: 'active',
        actorId: event.data.actorId,
        workspaceId: event.data.workspaceId,
        definitionId: event.data.definitionId,
        actorType: event.data.actorType,
        name: event.data.name,
        partialConfig: event.data.partialConfig,
      };
    case 'ActorConfigUpdated':
      return { ...state, name: event.data.name, partialConfig: event.data.partialConfig };
    case 'ActorDeleted':
      return { ...state, status: 'deleted' };
  }
}
