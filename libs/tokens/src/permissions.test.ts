import { describe, expect, it } from 'vitest';
import { serviceRoles, TOKEN_TYPES, type Principal, type ServiceRole } from './claims';
import { hasPermission, rolePermissions } from './permissions';

function principal(role: ServiceRole): Principal {
  return { subject: role, tokenType: TOKEN_TYPES.service, role, tokenId: 'jti', expiresAt: new Date() };
}

describe('rolePermissions', () => {
  it('has an entry for every role', () => {
    expect(Object.keys(rolePermissions).sort()).toEqual([...serviceRoles].sort());
  });

  it('lets only sync-worker hydrate', () => {
    const hydrators = serviceRoles.filter((r) => hasPermission(principal(r), 'secrets.hydrate'));
    expect(hydrators).toEqual(['sync-worker']);
  });

  it('lets only config and sync-worker write secrets', () => {
    const writers = serviceRoles.filter((r) => hasPermission(principal(r), 'secrets.write'));
    expect(writers.sort()).toEqual(['config', 'sync-worker']);
  });

  it('grants the documented permissions', () => {
    expect(rolePermissions.config).toEqual(['secrets.write', 'secrets.delete', 'secrets.list']);
    expect(rolePermissions['sync-worker']).toEqual(['secrets.hydrate', 'secrets.write', 'config.sync_plan', 'config.read']);
    expect(rolePermissions.operator).toEqual(['config.read', 'config.write', 'sync.read', 'secrets.admin']);
    expect(rolePermissions.auth).toEqual([]);
    expect(rolePermissions.secrets).toEqual([]);
  });

  it('cannot be widened at run time', () => {
    expect(() => (rolePermissions.config as string[]).push('secrets.hydrate')).toThrow();
    expect(hasPermission(principal('config'), 'secrets.hydrate')).toBe(false);
  });

  it('denies roles that are not its own keys', () => {
    expect(hasPermission({ ...principal('config'), role: 'constructor' as ServiceRole }, 'secrets.write')).toBe(false);
  });
});
