import { describe, expect, it } from 'vitest';
import { DUMMY_HASH, hashSecret, verifySecret } from './password-hash';

describe('client secret hashing', () => {
  it('verifies the right secret only, and salts every hash', async () => {
    const a = await hashSecret('s3cret-value');
    const b = await hashSecret('s3cret-value');
    expect(a).not.toBe(b);
    expect(a).not.toContain('s3cret-value');
    expect(await verifySecret('s3cret-value', a)).toBe(true);
    expect(await verifySecret('s3cret-valuE', a)).toBe(false);
    expect(await verifySecret('anything', DUMMY_HASH)).toBe(false);
    expect(await verifySecret('anything', 'garbage')).toBe(false);
  });
});
