import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CofferError } from '@coffer/contracts';
import type { KeyManagementService, WrappedKey } from './kms/kms';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** A sealed secret value: AES-256-GCM ciphertext plus the wrapped data key that opens it. */
export interface SealedValue {
  /** nonce (12) | tag (16) | ciphertext */
  ciphertext: Buffer;
  dataKey: WrappedKey;
}

/** The additional authenticated data that binds a ciphertext to its workspace and coordinate. */
export function bindingOf(workspaceId: string, coordinate: string): string {
  return `${workspaceId}|${coordinate}`;
}

/** Envelope-encrypts one value: a fresh 256-bit data key per value, wrapped by the KMS. */
export async function seal(kms: KeyManagementService, plaintext: string, binding: string): Promise<SealedValue> {
  const dek = randomBytes(32);
  try {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', dek, nonce);
    cipher.setAAD(Buffer.from(binding, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const dataKey = await kms.wrap(dek, binding);
    return { ciphertext: Buffer.concat([nonce, cipher.getAuthTag(), body]), dataKey };
  } finally {
    dek.fill(0);
  }
}

/** Decrypts a value with an already unwrapped data key; any mismatch (key, binding, bytes) fails. */
export function openWithKey(dek: Buffer, ciphertext: Buffer, binding: string): string {
  if (dek.length !== 32) throw new CofferError('internal', 'data key has the wrong length');
  if (ciphertext.length < NONCE_BYTES + TAG_BYTES) throw new CofferError('internal', 'ciphertext is too short');
  const decipher = createDecipheriv('aes-256-gcm', dek, ciphertext.subarray(0, NONCE_BYTES));
  decipher.setAAD(Buffer.from(binding, 'utf8'));
  decipher.setAuthTag(ciphertext.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(ciphertext.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new CofferError('internal', 'secret could not be decrypted');
  }
}

/** Unwraps the data key at the KMS and decrypts the value. */
export async function open(kms: KeyManagementService, sealed: SealedValue, binding: string): Promise<string> {
  const dek = await kms.unwrap(sealed.dataKey, binding);
  try {
    return openWithKey(dek, sealed.ciphertext, binding);
  } finally {
    dek.fill(0);
  }
}
