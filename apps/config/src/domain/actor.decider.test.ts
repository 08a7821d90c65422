import { describe, expect, it } from 'vitest';
import { decide, evolve, initialState, type ActorEvent, type CreateActor } from './actor.decider';
import * as connection from './connection.decider';

const now = '2026-01-01T00:00:00.000Z';
const create: CreateActor = {
  type: 'CreateActor',
  actorId: 'a1',
  workspaceId: 'w1',
  definitionId: 'd1',
  actorType: 'source',
  name: 'api',
  partialConfig: { api_token: { _secret: 'coffer_workspace_w1_secret_s_v1' } },
  now,
};
const given = (events: ActorEvent[]) => events.reduce(evolve, initialState());

describe('actor decider', () => {
  it('given nothing, when creating, then ActorCreated carries the partial config', () => {
    expect(decide(create, initialState())).toEqual([
      { type: 'ActorCreated', data: { actorId: 'a1', workspaceId: 'w1', definitionId: 'd1', actorType: 'source', name: 'api', partialConfig: create.partialConfig, createdAt: now } },
    ]);
  });

  it('given an actor, when creating it again, then failed_precondition', () => {
    expect(() => decide(create, given(decide(create, initialState())))).toThrow(/already exists/);
  });

  it('given an actor, when updating, then ActorConfigUpdated with the new partial config', () => {
    const state = given(decide(create, initialState()));
    const events = decide({ type: 'UpdateActorConfig', name: 'api2', partialConfig: { a: 1 }, shredBases: ['b1'], now }, state);
    expect(events).toEqual([{ type: 'ActorConfigUpdated', data: { actorId: 'a1', workspaceId: 'w1', name: 'api2', partialConfig: { a: 1 }, shredBases: ['b1'], updatedAt: now } }]);
    expect(given([...decide(create, initialState()), ...events])).toMatchObject({ name: 'api2', partialConfig: { a: 1 } });
  });

  it('given a deleted actor, when updating or deleting, then not_found', () => {
    const created = decide(create, initialState());
    const deleted = decide({ type: 'DeleteActor', shredBases: [], now }, given(created));
    const state = given([...created, ...deleted]);
    expect(state.status).toBe('deleted');
    expect(() => decide({ type: 'UpdateActorConfig', name: 'x', partialConfig: {}, shredBases: [], now }, state)).toThrow(/no such actor/);
    expect(() => decide({ type: 'DeleteActor', shredBases: [], now }, state)).toThrow(/no such actor/);
  });
});

describe('connection decider', () => {
  const createConnection: connection.CreateConnection = {
    type: 'CreateConnection',
    connectionId: 'c1',
    workspaceId: 'w1',
    sourceId: 's1',
    destinationId: 'd1',
    name: 'c',
    now,
  };

  it('given nothing, when requesting a sync, then not_found', () => {
    expect(() => connection.decide({ type: 'RequestSync', jobId: 'j1', alreadyRequested: false, now }, connection.initialState())).toThrow(/no such connection/);
  });

  it('given a connection, when requesting a sync, then SyncRequested names the job', () => {
    const state = connection.decide(createConnection, connection.initialState()).reduce(connection.evolve, connection.initialState());
    expect(connection.decide({ type: 'RequestSync', jobId: 'j1', alreadyRequested: false, now }, state)).toEqual([
      { type: 'SyncRequested', data: { jobId: 'j1', connectionId: 'c1', workspaceId: 'w1', requestedAt: now } },
    ]);
  });

  it('given a job requested already (a retried RequestSync), when requesting it again, then version_conflict and no event', () => {
    const state = connection.decide(createConnection, connection.initialState()).reduce(connection.evolve, connection.initialState());
    expect(() => connection.decide({ type: 'RequestSync', jobId: 'j1', alreadyRequested: true, now }, state)).toThrow(/requested already/);
  });

  it('refuses a connection from an actor to itself', () => {
    expect(() => connection.decide({ ...createConnection, destinationId: 's1' }, connection.initialState())).toThrow(/destination_id/);
  });
});
