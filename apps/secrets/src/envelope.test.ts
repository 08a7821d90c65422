import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bindingOf, open, seal } from './envelope';
import { createLocalKms, generateKeyringDocument, parseKeyring } from './kms/local-kms';

const kms = createLocalKms(parseKeyring(generateKeyringDocument()));
const canary = 'canary-envelope-7f3a9c';
const coordA = 'coffer_workspace_w1_secret_a_v1';
const coordB = 'coffer_workspace_w1_secret_b_v1';

describe('envelope encryption (barrier)', () => {
  it('round-trips and the stored bytes differ from the plaintext', async () => {
    const sealed = await seal(kms, canary, bindingOf('w1', coordA));
    expect(sealed.ciphertext.includes(Buffer.from(canary))).toBe(false);
    expect(sealed.dataKey.wrapped.length).toBe(60);
    expect(await open(kms, sealed, bindingOf('w1', coordA))).toBe(canary);
  });

  it('fails on one flipped byte of the ciphertext', async () => {
    const sealed = await seal(kms, canary, bindingOf('w1', coordA));
    for (const at of [0, 13, sealed.ciphertext.length - 1]) {
      const bad = Buffer.from(sealed.ciphertext);
      bad[at] = bad[at]! ^ 0x01;
      await expect(open(kms, { ...sealed, ciphertext: bad }, bindingOf('w1', coordA))).rejects.toThrow(/could not be decrypted/);
    }
  });

  it('fails when the ciphertext is moved to another coordinate or workspace', async () => {
    const sealed = await seal(kms, canary, bindingOf('w1', coordA));
    await expect(open(kms, sealed, bindingOf('w1', coordB))).rejects.toThrow();
    await expect(open(kms, sealed, bindingOf('w2', coordA))).rejects.toThrow();
  });

  it('gives different bytes for the same value written twice', async () => {
    const a = await seal(kms, canary, bindingOf('w1', coordA));
    const b = await seal(kms, canary, bindingOf('w1', coordA));
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(a.dataKey.wrapped.equals(b.dataKey.wrapped)).toBe(false);
  });

  it('fails under another keyring', async () => {
    const sealed = await seal(kms, canary, bindingOf('w1', coordA));
    const other = createLocalKms(parseKeyring(generateKeyringDocument()));
    await expect(open(other, sealed, bindingOf('w1', coordA))).rejects.toThrow();
  });
});

describe('local keyring', () => {
  it('refuses keys of the wrong length', () => {
    for (const n of [16, 31, 33, 64]) {
      const doc = JSON.stringify({ primaryVersion: 1, keys: [{ version: 1, key: randomBytes(n).toString('base64') }] });
      expect(() => parseKeyring(doc)).toThrow(/must be 32 bytes/);
    }
  });

  it('refuses a primary version without a key and malformed documents', () => {
    const doc = JSON.stringify({ primaryVersion: 2, keys: [{ version: 1, key: randomBytes(32).toString('base64') }] });
    expect(() => parseKeyring(doc)).toThrow(/primaryVersion 2/);
    expect(() => parseKeyring('not json')).toThrow(/not valid JSON/);
    expect(() => parseKeyring('{"keys":[]}')).toThrow(/malformed/);
  });

  it('refuses data keys of the wrong length', async () => {
    await expect(kms.wrap(randomBytes(16), 'ctx')).rejects.toThrow(/32 bytes/);
  });
});
