import { describe, expect, it } from 'vitest';
import { authV1, secretsV1 } from '@coffer/contracts';
import type { MethodSpec } from './call-context';
import { defineService } from './define-service';
import { unservedAuthMethods } from '../test/fixtures';

const ok = async () => ({ configJson: '{}' });
type AnyHandlers = Parameters<typeof defineService<typeof secretsV1.SecretsServiceService>>[2];

function handlers(overrides: Record<string, unknown> = {}): AnyHandlers {
  return {
    writeSecrets: { permission: 'secrets.write', handler: async () => ({ secrets: [] }) },
    hydrateConfig: { permission: 'secrets.hydrate', handler: ok },
    deleteSecrets: { permission: 'secrets.delete', handler: async () => ({ destroyed: [] }) },
    listSecretVersions: { permission: 'secrets.list', handler: async () => ({ versions: [] }) },
    getLatestSecretVersions: { permission: 'secrets.list', handler: async () => ({ versions: [] }) },
    deleteWorkspaceSecrets: { permission: 'secrets.delete', handler: async () => ({ destroyedCount: 0 }) },
    rollbackSecret: { permission: 'secrets.write', handler: async () => ({ secret: undefined }) },
    rotateKeyEncryptionKey: { permission: 'secrets.admin', handler: async () => ({ kekVersion: 1, rewrapped: 0 }) },
    retireKeyEncryptionKeyVersion: { permission: 'secrets.admin', handler: async () => ({}) },
    listKeyEncryptionKeyVersions: { permission: 'secrets.admin', handler: async () => ({ provider: 'local', kekId: 'k', versions: [] }) },
    ...overrides,
  } as AnyHandlers;
}

describe('defineService', () => {
  it('registers every method with its permission', () => {
    const reg = defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', handlers());
    expect(reg.name).toBe('coffer.secrets.v1.SecretsService');
    expect(Object.fromEntries(Object.entries(reg.methods).map(([k, m]) => [k, (m as MethodSpec<unknown, unknown>).permission]))).toEqual({
      writeSecrets: 'secrets.write',
      hydrateConfig: 'secrets.hydrate',
      deleteSecrets: 'secrets.delete',
      listSecretVersions: 'secrets.list',
      getLatestSecretVersions: 'secrets.list',
      deleteWorkspaceSecrets: 'secrets.delete',
      rollbackSecret: 'secrets.write',
      rotateKeyEncryptionKey: 'secrets.admin',
      retireKeyEncryptionKeyVersion: 'secrets.admin',
      listKeyEncryptionKeyVersions: 'secrets.admin',
    });
  });

  it('throws at start-up when a method has no handler', () => {
    const { hydrateConfig: _omitted, ...rest } = handlers() as Record<string, unknown>;
    expect(() => defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', rest as AnyHandlers)).toThrow(
      'coffer.secrets.v1.SecretsService.hydrateConfig: no handler declared',
    );
  });

  it('throws when a permission is missing or unknown', () => {
    for (const permission of [undefined, 'secrets.read_everything', '']) {
      expect(() =>
        defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', handlers({ hydrateConfig: { permission, handler: ok } })),
      ).toThrow(/hydrateConfig: permission must be/);
    }
  });

  it('throws when a handler matches no method', () => {
    expect(() =>
      defineService(secretsV1.SecretsServiceService, 'coffer.secrets.v1.SecretsService', handlers({ readSecret: { permission: 'public', handler: ok } })),
    ).toThrow(/handler readSecret matches no method/);
  });

  it('throws when the name does not match the definition', () => {
    expect(() => defineService(authV1.AuthServiceService, 'coffer.secrets.v1.SecretsService', {
      issueServiceToken: { permission: 'public', handler: async () => ({ accessToken: '', expiresIn: 0, tokenType: '' }) },
      getJwks: { permission: 'public', handler: async () => ({ jwksJson: '{}' }) },
      ...unservedAuthMethods(),
    } as never)).toThrow(/not in this service/);
  });

  it('throws on streaming methods', () => {
    const streaming = { watch: { ...secretsV1.SecretsServiceService.hydrateConfig, path: '/coffer.x.v1.X/Watch', responseStream: true } };
    expect(() => defineService(streaming, 'coffer.x.v1.X', { watch: { permission: 'public', handler: ok } } as never)).toThrow(/streaming/);
  });
});
