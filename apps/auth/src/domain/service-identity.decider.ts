import { CofferError } from '@coffer/contracts';

/** Registers a service identity from configuration, or records that its secret changed. */
export interface RegisterServiceIdentity {
  type: 'RegisterServiceIdentity';
  clientId: string;
  role: string;
  /** The new secret's hash (scrypt, salted). */
  secretHash: string;
  /** Whether the configured secret verifies against the stored hash (computed outside the domain). */
  secretMatchesStored: boolean;
  now: string;
}

/** Revokes every token of the identity issued so far; it gets new ones only once its secret changes. */
export interface RevokeServiceIdentity {
  type: 'RevokeServiceIdentity';
  clientId: string;
  now: string;
}

export type ServiceIdentityEvent =
  | { type: 'ServiceIdentityRegistered'; data: { clientId: string; role: string; secretHash: string; registeredAt: string } }
  | { type: 'ServiceIdentitySecretChanged'; data: { clientId: string; secretHash: string; changedAt: string } }
  | { type: 'ServiceIdentityRoleChanged'; data: { clientId: string; role: string; changedAt: string } }
  | { type: 'ServiceIdentityRevoked'; data: { clientId: string; revokedAt: string } };

export interface ServiceIdentityState {
  clientId: string | null;
  role: string | null;
  secretHash: string | null;
  /** Set while the identity is revoked. */
  revokedAt: string | null;
}

/** A service identity that was never registered. */
export function initialState(): ServiceIdentityState {
  return { clientId: null, role: null, secretHash: null, revokedAt: null };
}

/** Applies one event. */
export function evolve(state: ServiceIdentityState, event: ServiceIdentityEvent): ServiceIdentityState {
  switch (event.type) {
    case 'ServiceIdentityRegistered':
      return { clientId: event.data.clientId, role: event.data.role, secretHash: event.data.secretHash, revokedAt: null };
    case 'ServiceIdentitySecretChanged':
      return { ...state, secretHash: event.data.secretHash, revokedAt: null };
    case 'ServiceIdentityRevoked':
      return { ...state, revokedAt: event.data.revokedAt };
    case 'ServiceIdentityRoleChanged':
      return { ...state, role: event.data.role };
  }
}

/** Registration is idempotent: an unchanged identity yields no event. A revoked identity comes back with a new secret only. */
export function decide(command: RegisterServiceIdentity | RevokeServiceIdentity, state: ServiceIdentityState): ServiceIdentityEvent[] {
  if (command.type === 'RevokeServiceIdentity') {
    if (state.clientId === null) throw new CofferError('not_found', `no service identity ${command.clientId}`, [{ field: 'client_id', reason: 'not found' }]);
    return [{ type: 'ServiceIdentityRevoked', data: { clientId: command.clientId, revokedAt: command.now } }];
  }
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(command.clientId)) {
    throw new CofferError('invalid_argument', 'client id must be lowercase letters, digits and dashes', [{ field: 'clientId', reason: 'invalid' }]);
  }
  if (state.clientId === null) {
    return [{ type: 'ServiceIdentityRegistered', data: { clientId: command.clientId, role: command.role, secretHash: command.secretHash, registeredAt: command.now } }];
  }
  const events: ServiceIdentityEvent[] = [];
  if (!command.secretMatchesStored) {
    events.push({ type: 'ServiceIdentitySecretChanged', data: { clientId: command.clientId, secretHash: command.secretHash, changedAt: command.now } });
  }
  if (state.role !== command.role) {
    events.push({ type: 'ServiceIdentityRoleChanged', data: { clientId: command.clientId, role: command.role, changedAt: command.now } });
  }
  return events;
}
