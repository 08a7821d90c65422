import { describe, expect, it } from 'vitest';
import { decide, evolve, initialState, type SecretEvent, type WriteSecretVersion } from './secret.decider';

const base = 'coffer_workspace_w1_secret_s1';
const now = '2026-01-01T00:00:00.000Z';
const write = (version: number, expectedVersion = 0): WriteSecretVersion => ({
  type: 'WriteSecretVersion',
  baseCoordinate: base,
  workspaceId: 'w1',
  version,
  expectedVersion,
  ownerId: 'actor-1',
  ownerWorkspaceId: 'w1',
  ciphertext: 'c',
  dataKeyId: `k${version}`,
  kekId: 'local',
  kekVersion: 1,
  expiresAt: null,
  now,
});
const given = (events: SecretEvent[]) => events.reduce(evolve, initialState());

describe('secret decider', () => {
  it('given nothing, when writing v1, then SecretVersionWritten v1', () => {
    const events = decide(write(1), initialState());
    expect(events).toMatchObject([{ type: 'SecretVersionWritten', data: { coordinate: `${base}_v1`, version: 1 } }]);
  });

  it('given v1, when writing with a stale expected version, then version_conflict', () => {
    const state = given(decide(write(1), initialState()));
    const v2 = decide(write(2, 1), state);
    expect(() => decide(write(3, 1), given([...decide(write(1), initialState()), ...v2]))).toThrow(/expected 1/);
  });

  it('given v1 of one owner, when another owner writes v2, then permission_denied; the owner itself may', () => {
    const state = given(decide(write(1), initialState()));
    expect(state.ownerId).toBe('actor-1');
    expect(() => decide({ ...write(2, 1), ownerId: 'actor-2' }, state)).toThrow(expect.objectContaining({ code: 'permission_denied' }));
    expect(() => decide({ ...write(2, 1), ownerId: null }, state)).toThrow(expect.objectContaining({ code: 'permission_denied' }));
    expect(decide(write(2, 1), state)).toMatchObject([{ data: { version: 2, ownerId: 'actor-1', ownerWorkspaceId: 'w1' } }]);
  });

  it('given v1, when writing a version that is not next, then version_conflict', () => {
    const state = given(decide(write(1), initialState()));
    expect(() => decide(write(1), state)).toThrow(/version_conflict|meanwhile/);
  });

  it('given another workspace, when writing, then not_found', () => {
    const state = given(decide(write(1), initialState()));
    expect(() => decide({ ...write(2), workspaceId: 'w2' }, state)).toThrow(/no such secret/);
  });

  it('given v1 and v2, when destroying all, then both are destroyed once', () => {
    const state = given([...decide(write(1), initialState()), ...decide(write(2), given(decide(write(1), initialState())))]);
    const destroyed = decide({ type: 'DestroySecretVersions', workspaceId: 'w1', versions: 'all', reason: 'deleted', now }, state);
    expect(destroyed.map((e) => e.data.version)).toEqual([1, 2]);
    const after = destroyed.reduce(evolve, state);
    expect(decide({ type: 'DestroySecretVersions', workspaceId: 'w1', versions: 'all', reason: 'deleted', now }, after)).toEqual([]);
  });

  it('given nothing, when destroying, then not_found', () => {
    expect(() =>
      decide({ type: 'DestroySecretVersions', workspaceId: 'w1', versions: [1], reason: 'deleted', now }, initialState()),
    ).toThrow(/no such secret/);
  });
});
