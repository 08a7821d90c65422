import { CofferError } from '@coffer/contracts';

/** Commands on one application of an organization. */
export type ApplicationCommand =
  | { type: 'CreateApplication'; clientId: string; organizationId: string; name: string; allowedOrigins: string[]; secretHash: string; now: string }
  | { type: 'RotateApplicationSecret'; secretHash: string; now: string; graceMs: number }
  | { type: 'DisableApplication'; now: string };

export type ApplicationEvent =
  | { type: 'ApplicationCreated'; data: { clientId: string; organizationId: string; name: string; allowedOrigins: string[]; secretHash: string; createdAt: string } }
  | { type: 'ApplicationSecretRotated'; data: { clientId: string; secretHash: string; previousSecretHash: string; previousValidUntil: string; rotatedAt: string } }
  | { type: 'ApplicationDisabled'; data: { clientId: string; organizationId: string; disabledAt: string } };

export interface ApplicationState {
  clientId: string | null;
  organizationId: string | null;
  name: string;
  allowedOrigins: string[];
  secretHash: string | null;
  previousSecretHash: string | null;
  previousValidUntil: string | null;
  disabledAt: string | null;
}

export function initialState(): ApplicationState {
  return { clientId: null, organizationId: null, name: '', allowedOrigins: [], secretHash: null, previousSecretHash: null, previousValidUntil: null, disabledAt: null };
}

export function evolve(state: ApplicationState, event: ApplicationEvent): ApplicationState {
  switch (event.type) {
    case 'ApplicationCreated':
      return { ...initialState(), clientId: event.data.clientId, organizationId: event.data.organizationId, name: event.data.name, allowedOrigins: event.data.allowedOrigins, secretHash: event.data.secretHash };
    case 'ApplicationSecretRotated':
      return { ...state, secretHash: event.data.secretHash, previousSecretHash: event.data.previousSecretHash, previousValidUntil: event.data.previousValidUntil };
    case 'ApplicationDisabled':
      return { ...state, disabledAt: event.data.disabledAt };
  }
}

/** An origin as browsers send it: scheme, host and optional port, nothing else. */
export function normalizeOrigin(value: string): string | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
    if (url.username || url.password || url.pathname !== '/' || url.search || url.hash) return undefined;
    if (url.origin !== value.replace(/\/$/, '')) return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

export function decide(command: ApplicationCommand, state: ApplicationState): ApplicationEvent[] {
  switch (command.type) {
    case 'CreateApplication': {
      if (state.clientId !== null) throw new CofferError('version_conflict', `application ${command.clientId} exists`);
      const name = command.name.trim();
      if (name.length === 0 || name.length > 200) throw new CofferError('invalid_argument', 'name must be 1 to 200 characters', [{ field: 'name', reason: 'invalid' }]);
      const origins: string[] = [];
      command.allowedOrigins.forEach((o, i) => {
        const origin = normalizeOrigin(o);
        if (!origin) throw new CofferError('invalid_argument', `allowed_origins[${i}] is not an origin (scheme://host[:port])`, [{ field: `allowed_origins[${i}]`, reason: 'invalid' }]);
        if (!origins.includes(origin)) origins.push(origin);
      });
      return [{ type: 'ApplicationCreated', data: { clientId: command.clientId, organizationId: command.organizationId, name, allowedOrigins: origins, secretHash: command.secretHash, createdAt: command.now } }];
    }
    case 'RotateApplicationSecret': {
      requireActive(state);
      const previousValidUntil = new Date(new Date(command.now).getTime() + command.graceMs).toISOString();
      return [{ type: 'ApplicationSecretRotated', data: { clientId: state.clientId!, secretHash: command.secretHash, previousSecretHash: state.secretHash!, previousValidUntil, rotatedAt: command.now } }];
    }
    case 'DisableApplication':
      if (state.clientId === null) throw notFound();
      if (state.disabledAt !== null) return [];
      return [{ type: 'ApplicationDisabled', data: { clientId: state.clientId, organizationId: state.organizationId!, disabledAt: command.now } }];
  }
}

function notFound(): CofferError {
  return new CofferError('not_found', 'no such application', [{ field: 'client_id', reason: 'not found' }]);
}

function requireActive(state: ApplicationState): void {
  if (state.clientId === null) throw notFound();
  if (state.disabledAt !== null) throw new CofferError('failed_precondition', `application ${state.clientId} is disabled`);
}
