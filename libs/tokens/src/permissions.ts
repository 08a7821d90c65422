import type { Permission, Principal, Role } from './claims';

/**
 * What each role may do. Only sync-worker hydrates; only config and sync-worker write secrets; auth
 * and secrets call nobody's protected methods (config asks the sync worker for one thing: the token request
 * of an OAuth code flow) except auth provisioning end users' workspaces and
 * reading a workspace's owner before it issues a scoped token for it. The
 * organization's roles never reach secrets, and their reach is narrowed further by the token's scope
 * (organization, workspace) in each service. Proxying an API call with a stored credential
 * (`config.proxy`) is for those who may change a workspace; config alone asks the sync worker to send it.
 */
export const rolePermissions: Readonly<Record<Role, readonly Permission[]>> = Object.freeze({
  auth: Object.freeze(['config.provision', 'config.read'] as const),
  secrets: Object.freeze([]),
  config: Object.freeze(['secrets.write', 'secrets.delete', 'secrets.list', 'sync.proxy', 'sync.oauth_exchange'] as const),
  'sync-worker': Object.freeze(['secrets.hydrate', 'secrets.write', 'config.sync_plan', 'config.read'] as const),
  operator: Object.freeze(['config.read', 'config.write', 'config.catalog', 'sync.read', 'sync.cancel', 'secrets.admin', 'auth.admin', 'auth.applications', 'auth.revoke'] as const),
  org_admin: Object.freeze(['config.read', 'config.write', 'config.proxy', 'auth.applications', 'auth.issue_scoped', 'auth.revoke'] as const),
  workspace_editor: Object.freeze(['config.read', 'config.write', 'config.proxy', 'auth.issue_widget'] as const),
  workspace_reader: Object.freeze(['config.read', 'auth.issue_widget'] as const),
});

/** True when the principal's role grants `permission`. */
export function hasPermission(principal: Pick<Principal, 'role'>, permission: Permission): boolean {
  // Own-property lookup: a role string like "constructor" must not reach Object.prototype.
  if (!Object.hasOwn(rolePermissions, principal.role)) return false;
  return rolePermissions[principal.role].includes(permission);
}
