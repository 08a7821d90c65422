import { describe, expect, it } from 'vitest';
import { serviceRoles, TOKEN_TYPES, userRoles, type Principal, type ServiceRole } from './claims';
import { hasPermission, rolePermissions } from './permissions';

function principal(role: ServiceRole): Principal {
  return { subject: role, kind: 'service', tokenType: TOKEN_TYPES.service, role, tokenId: 'jti', issuedAt: new Date(), expiresAt: new Date() };
}

describe('rolePermissions', () => {
  it('has an entry for every role', () => {
    expect(Object.keys(rolePermissions).sort()).toEqual([...serviceRoles, ...userRoles].sort());
  });

  it('lets only sync-worker hydrate', () => {
    const hydrators = serviceRoles.filter((r) => hasPermission(principal(r), 'secrets.hydrate'));
    expect(hydrators).toEqual(['sync-worker']);
  });

  it('lets only config and sync-worker write secrets', () => {
    const writers = serviceRoles.filter((r) => hasPermission(principal(r), 'secrets.write'));
    expect(writers.sort()).toEqual(['config', 'sync-worker']);
  });

  it('lets only config ask a sync worker to exchange an authorization code', () => {
    const callers = [...serviceRoles, ...userRoles].filter((r) => (rolePermissions[r] as readonly string[]).includes('sync.oauth_exchange'));
    expect(callers).toEqual(['config']);
  });

  it('grants the documented permissions', () => {
    expect(rolePermissions.config).toEqual(['secrets.write', 'secrets.delete', 'secrets.list', 'sync.proxy', 'sync.oauth_exchange']);
    expect(rolePermissions['sync-worker']).toEqual(['secrets.hydrate', 'secrets.write', 'config.sync_plan', 'config.read']);
    expect(rolePermissions.operator).toEqual(['config.read', 'config.write', 'config.catalog', 'sync.read', 'sync.cancel', 'secrets.admin', 'auth.admin', 'auth.applications', 'auth.revoke']);
    expect(rolePermissions.auth).toEqual(['config.provision', 'config.read']);
    expect(rolePermissions.secrets).toEqual([]);
  });

  it('never lets an organization role near secrets or the connector catalog', () => {
    for (const role of userRoles) {
      expect(rolePermissions[role].filter((p) => p.startsWith('secrets.') || p === 'config.catalog' || p === 'config.sync_plan')).toEqual([]);
    }
    expect(rolePermissions.workspace_reader).not.toContain('config.write');
  });

  it('lets only config ask the sync worker to proxy, and only those who may change a workspace ask config', () => {
    expect(serviceRoles.filter((r) => hasPermission(principal(r), 'sync.proxy'))).toEqual(['config']);
    expect(userRoles.filter((r) => rolePermissions[r].includes('config.proxy')).sort()).toEqual(['org_admin', 'workspace_editor']);
  });

  it('cannot be widened at run time', () => {
    expect(() => (rolePermissions.config as string[]).push('secrets.hydrate')).toThrow();
    expect(hasPermission(principal('config'), 'secrets.hydrate')).toBe(false);
  });

  it('denies roles that are not its own keys', () => {
    expect(hasPermission({ ...principal('config'), role: 'constructor' as ServiceRole }, 'secrets.write')).toBe(false);
  });
});
