/** The `typ` header values of the tokens Coffer issues. */
export const TOKEN_TYPES = { service: 'coffer-service+jwt' } as const;

/** Every service role; `operator` is admin tooling (CLI, tests) on the config API and never hydrates. */
export const serviceRoles = ['auth', 'config', 'secrets', 'sync-worker', 'operator'] as const;

/** The role a service identity carries in its token's `role` claim. */
export type ServiceRole = (typeof serviceRoles)[number];

/** Every permission a gRPC method can require. */
export const permissions = [
  'secrets.write',
  'secrets.hydrate',
  'secrets.delete',
  'secrets.list',
  'secrets.admin',
  'config.read',
  'config.write',
  'config.sync_plan',
  'sync.read',
] as const;

/** What a caller may do; each gRPC method declares the one it needs. */
export type Permission = (typeof permissions)[number];

/** True when `value` is one of {@link permissions}. */
export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && (permissions as readonly string[]).includes(value);
}

/** The verified identity behind a call. */
export interface Principal {
  /** `sub`: the client id of the service identity. */
  subject: string;
  /** The token's `typ` header, e.g. `coffer-service+jwt`. */
  tokenType: string;
  role: ServiceRole;
  /** `jti`, for revocation and audit. */
  tokenId: string;
  expiresAt: Date;
}

/** True when `value` is one of {@link serviceRoles}. */
export function isServiceRole(value: unknown): value is ServiceRole {
  return typeof value === 'string' && (serviceRoles as readonly string[]).includes(value);
}
