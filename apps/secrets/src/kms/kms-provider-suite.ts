import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import type { KeyManagementService } from './kms';

/**
 * The behaviour every KMS provider must show; each provider's test file runs it against a real
 * instance (a keyring file, a SoftHSM2 token, an SDK pointed at a local endpoint).
 * @internal test support
 */
export function kmsProviderSuite(name: string, make: () => Promise<KeyManagementService>): void {
  it(`${name}: wraps and unwraps a data key bound to its context`, async () => {
    const kms = await make();
    const dek = randomBytes(32);
    const wrapped = await kms.wrap(dek, 'ws|coordinate_v1');
    expect(wrapped.kekId).toBe(kms.kekId);
    expect(wrapped.kekVersion).toBe(kms.primaryVersion());
    expect(wrapped.wrapped.includes(dek)).toBe(false);
    expect(await kms.unwrap(wrapped, 'ws|coordinate_v1')).toEqual(dek);
    await expect(kms.unwrap(wrapped, 'ws|coordinate_v2')).rejects.toThrow();
  });

  it(`${name}: a flipped byte of a wrapped key fails, the same key wrapped twice differs, wrong lengths are refused`, async () => {
    const kms = await make();
    const dek = randomBytes(32);
    const a = await kms.wrap(dek, 'ctx');
    const b = await kms.wrap(dek, 'ctx');
    expect(a.wrapped.equals(b.wrapped)).toBe(false);
    const flipped = Buffer.from(a.wrapped);
    flipped[flipped.length - 1]! ^= 0x01;
    await expect(kms.unwrap({ ...a, wrapped: flipped }, 'ctx')).rejects.toThrow();
    await expect(kms.wrap(randomBytes(16), 'ctx')).rejects.toThrow(/32 bytes/);
    await expect(kms.wrap(randomBytes(33), 'ctx')).rejects.toThrow(/32 bytes/);
  });

  it(`${name}: a new KEK version becomes primary, old wraps still open until the old version is retired`, async () => {
    const kms = await make();
    const dek = randomBytes(32);
    const before = await kms.wrap(dek, 'ctx');
    const v = await kms.createVersion();
    expect(v).toBeGreaterThan(before.kekVersion);
    expect(kms.primaryVersion()).toBe(v);
    const after = await kms.wrap(dek, 'ctx');
    expect(after.kekVersion).toBe(v);
    expect(await kms.unwrap(before, 'ctx')).toEqual(dek);
    await expect(kms.retireVersion(v)).rejects.toThrow(/primary/);
    await kms.retireVersion(before.kekVersion);
    await expect(kms.unwrap(before, 'ctx')).rejects.toThrow();
    expect(await kms.unwrap(after, 'ctx')).toEqual(dek);
    const versions = await kms.versions();
    expect(versions.find((x) => x.version === before.kekVersion)?.state).toBe('retired');
    expect(versions.find((x) => x.version === v)?.state).toBe('primary');
  });
}
