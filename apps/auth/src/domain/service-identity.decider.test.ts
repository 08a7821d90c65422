import { describe, expect, it } from 'vitest';
import { decide, evolve, initialState, type RegisterServiceIdentity } from './service-identity.decider';

const cmd = (over: Partial<RegisterServiceIdentity> = {}): RegisterServiceIdentity => ({
  type: 'RegisterServiceIdentity',
  clientId: 'config',
  role: 'config',
  secretHash: 'h1',
  secretMatchesStored: false,
  now: '2026-01-01T00:00:00.000Z',
  ...over,
});

describe('service identity decider', () => {
  it('given nothing, when registering, then registered', () => {
    expect(decide(cmd(), initialState())).toMatchObject([{ type: 'ServiceIdentityRegistered', data: { clientId: 'config', role: 'config' } }]);
  });

  it('given registered, when the same secret and role come again, then nothing', () => {
    const state = decide(cmd(), initialState()).reduce(evolve, initialState());
    expect(decide(cmd({ secretMatchesStored: true }), state)).toEqual([]);
  });

  it('given registered, when the secret and role change, then both are recorded', () => {
    const state = decide(cmd(), initialState()).reduce(evolve, initialState());
    const events = decide(cmd({ secretHash: 'h2', role: 'operator' }), state);
    expect(events.map((e) => e.type)).toEqual(['ServiceIdentitySecretChanged', 'ServiceIdentityRoleChanged']);
    expect(events.reduce(evolve, state)).toEqual({ clientId: 'config', role: 'operator', secretHash: 'h2', revokedAt: null });
  });

  it('refuses a malformed client id', () => {
    expect(() => decide(cmd({ clientId: 'Bad Id' }), initialState())).toThrow(/client id/);
  });

  it('revokes a registered identity, and a new secret brings it back', () => {
    const registered = decide(cmd(), initialState()).reduce(evolve, initialState());
    const revoked = decide({ type: 'RevokeServiceIdentity', clientId: 'config', now: '2026-01-02T00:00:00.000Z' }, registered).reduce(evolve, registered);
    expect(revoked.revokedAt).toBe('2026-01-02T00:00:00.000Z');
    const back = decide(cmd({ secretHash: 'h2', secretMatchesStored: false }), revoked).reduce(evolve, revoked);
    expect(back.revokedAt).toBeNull();
    expect(() => decide({ type: 'RevokeServiceIdentity', clientId: 'nobody', now: 'x' }, initialState())).toThrow(/no service identity/);
  });
});
