import type { Permission, Principal, ServiceRole } from './claims';

/**
 * What each service role may do. Only sync-worker hydrates; only config and sync-worker write
 * secrets; auth and secrets call nobody's protected methods.
 */
export const rolePermissions: Readonly<Record<ServiceRole, readonly Permission[]>> = Object.freeze({
  auth: Object.freeze([]),
  secrets: Object.freeze([]),
  config: Object.freeze(['secrets.write', 'secrets.delete', 'secrets.list'] as const),
  'sync-worker': Object.freeze(['secrets.hydrate', 'secrets.write', 'config.sync_plan', 'config.read'] as const),
  operator: Object.freeze(['config.read', 'config.write', 'sync.read', 'secrets.admin'] as const),
});

/** True when the principal's role grants `permission`. */
export function hasPermission(principal: Principal, permission: Permission): boolean {
  // Own-property lookup: a role string like "constructor" must not reach Object.prototype.
  if (!Object.hasOwn(rolePermissions, principal.role)) return false;
  return rolePermissions[principal.role].includes(permission);
}
