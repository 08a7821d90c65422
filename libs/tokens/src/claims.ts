/** The `typ` header values of the tokens Coffer issues, one per kind of token. */
export const TOKEN_TYPES = {
  service: 'coffer-service+jwt',
  application: 'coffer-app+jwt',
  scoped: 'coffer-scoped+jwt',
  widget: 'coffer-widget+jwt',
} as const;

/** The kinds of token: a service identity's, an application's, a scoped (end-user) one, a widget's. */
export type TokenKind = keyof typeof TOKEN_TYPES;

/** Token kinds held by organizations' callers (applications, their end users, widgets). */
export const userTokenKinds = ['application', 'scoped', 'widget'] as const satisfies readonly TokenKind[];

/** Every service role; `operator` is admin tooling (CLI, tests) on the config API and never hydrates. */
export const serviceRoles = ['auth', 'config', 'secrets', 'sync-worker', 'operator'] as const;

/** The role a service identity carries in its token's `role` claim. */
export type ServiceRole = (typeof serviceRoles)[number];

/** Roles of an organization's callers: the whole organization, or one workspace to change or to read. */
export const userRoles = ['org_admin', 'workspace_editor', 'workspace_reader'] as const;

/** The role an application, scoped or widget token carries. */
export type UserRole = (typeof userRoles)[number];

/** Any role a principal can hold. */
export type Role = ServiceRole | UserRole;

/** Every permission a gRPC method can require. */
export const permissions = [
  'secrets.write',
  'secrets.hydrate',
  'secrets.delete',
  'secrets.list',
  'secrets.admin',
  'config.read',
  'config.write',
  'config.catalog',
  'config.provision',
  'config.sync_plan',
  'config.proxy',
  'sync.read',
  'sync.cancel',
  'sync.proxy',
  'sync.oauth_exchange',
  'auth.admin',
  'auth.applications',
  'auth.issue_scoped',
  'auth.issue_widget',
  'auth.revoke',
] as const;

/** What a caller may do; each gRPC method declares the one it needs. */
export type Permission = (typeof permissions)[number];

/** True when `value` is one of {@link permissions}. */
export function isPermission(value: unknown): value is Permission {
  return typeof value === 'string' && (permissions as readonly string[]).includes(value);
}

/** The verified identity behind a call. */
export interface Principal {
  /** `sub`: a service identity's or an application's client id, or the end user's external id. */
  subject: string;
  kind: TokenKind;
  /** The token's `typ` header, e.g. `coffer-service+jwt`. */
  tokenType: string;
  role: Role;
  /** `jti`, for revocation and audit. */
  tokenId: string;
  issuedAt: Date;
  expiresAt: Date;
  /** `azp`: the application a user token descends from (application, scoped and widget tokens). */
  applicationId?: string;
  /** `org`: the organization of a user token. */
  organizationId?: string;
  /** `ws`: the one workspace a scoped or widget token may touch. */
  workspaceId?: string;
  /** `ext`: the organization's id for its end user. */
  externalUserId?: string;
  /** `origin`: the browser origin a widget token is bound to. */
  origin?: string;
  /** `pjti`: the `jti` of the scoped token a widget token was minted from; revoking that one revokes this one. */
  parentTokenId?: string;
}

/** True when `value` is one of {@link serviceRoles}. */
export function isServiceRole(value: unknown): value is ServiceRole {
  return typeof value === 'string' && (serviceRoles as readonly string[]).includes(value);
}

/** True when `value` is one of {@link userRoles}. */
export function isUserRole(value: unknown): value is UserRole {
  return typeof value === 'string' && (userRoles as readonly string[]).includes(value);
}

/** The token kind of a `typ` header value, if it is one of ours. */
export function tokenKindOf(typ: string): TokenKind | undefined {
  const t = typ.toLowerCase().replace(/^application\//, '');
  return (Object.keys(TOKEN_TYPES) as TokenKind[]).find((k) => TOKEN_TYPES[k] === t);
}
