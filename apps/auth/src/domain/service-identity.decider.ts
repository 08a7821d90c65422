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

export type ServiceIdentityEvent =
  | { type: 'ServiceIdentityRegistered'; data: { clientId: string; role: string; secretHash: string; registeredAt: string } }
  | { type: 'ServiceIdentitySecretChanged'; data: { clientId: string; secretHash: string; changedAt: string } }
  | { type: 'ServiceIdentityRoleChanged'; data: { clientId: string; role: string; changedAt: string } };

export interface ServiceIdentityState {
  clientId: string | null;
  role: string | null;
  secretHash: string | null;
}

/** A service identity that was never registered. */
export function initialState(): ServiceIdentityState {
  return { clientId: null, role: null, secretHash: null };
}

/** Applies one event. */
export function evolve(state: ServiceIdentityState, event: ServiceIdentityEvent): ServiceIdentityState {
  switch (event.type) {
    case 'ServiceIdentityRegistered':
      return { clientId: event.data.clientId, role: event.data.role, secretHash: event.data.secretHash };
    case 'ServiceIdentitySecretChanged':
      return { ...state, secretHash: event.data.secretHash };
    case 'ServiceIdentityRoleChanged':
      return { ...state, role: event.data.role };
  }
}

/** Registration is idempotent: an unchanged identity yields no event. */
export function decide(command: RegisterServiceIdentity, state: ServiceIdentityState): ServiceIdentityEvent[] {
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
