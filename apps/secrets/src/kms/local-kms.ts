import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { CofferError } from '@coffer/contracts';
import type { KeyManagementService, WrappedKey } from './kms';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

const keyringSchema = z.object({
  id: z.string().min(1).default('local'),
  primaryVersion: z.number().int().positive(),
  keys: z
    .array(z.object({ version: z.number().int().positive(), key: z.string().min(1) }))
    .min(1),
});

/** The parsed contents of a local keyring file. */
export interface LocalKeyring {
  id: string;
  primaryVersion: number;
  keys: Map<number, Buffer>;
}

/** Parses a keyring document: `{"id","primaryVersion","keys":[{"version":1,"key":"<base64 of 32 bytes>"}]}`. */
export function parseKeyring(text: string): LocalKeyring {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CofferError('invalid_argument', 'keyring file is not valid JSON');
  }
  const parsed = keyringSchema.safeParse(raw);
  if (!parsed.success) {
    throw new CofferError('invalid_argument', `keyring file is malformed: ${parsed.error.issues.map((i) => i.path.join('.')).join(', ')}`);
  }
  const keys = new Map<number, Buffer>();
  for (const { version, key } of parsed.data.keys) {
    const bytes = Buffer.from(key, 'base64');
    if (bytes.length !== KEY_BYTES) {
      throw new CofferError('invalid_argument', `keyring key version ${version} must be ${KEY_BYTES} bytes, got ${bytes.length}`);
    }
    if (keys.has(version)) throw new CofferError('invalid_argument', `keyring key version ${version} appears twice`);
    keys.set(version, bytes);
  }
  if (!keys.has(parsed.data.primaryVersion)) {
    throw new CofferError('invalid_argument', `keyring primaryVersion ${parsed.data.primaryVersion} has no key`);
  }
  return { id: parsed.data.id, primaryVersion: parsed.data.primaryVersion, keys };
}

/** Makes a new keyring document with one random key, for development and tests. */
export function generateKeyringDocument(id = 'local'): string {
  return JSON.stringify({ id, primaryVersion: 1, keys: [{ version: 1, key: randomBytes(KEY_BYTES).toString('base64') }] });
}

/**
 * The `local` KMS provider: a versioned keyring from a key file, for development. Data keys are
 * wrapped with AES-256-GCM under the KEK, with the caller's context as additional authenticated data.
 */
export function createLocalKms(keyring: LocalKeyring): KeyManagementService {
  const aad = (version: number, context: string) => Buffer.from(`coffer-dek|${keyring.id}|${version}|${context}`, 'utf8');
  return {
    provider: 'local',
    primaryVersion: () => keyring.primaryVersion,
    async wrap(dataKey, context) {
      if (dataKey.length !== KEY_BYTES) throw new CofferError('invalid_argument', `data key must be ${KEY_BYTES} bytes`);
      const version = keyring.primaryVersion;
      const kek = keyring.keys.get(version)!;
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', kek, nonce);
      cipher.setAAD(aad(version, context));
      const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
      return { kekId: keyring.id, kekVersion: version, wrapped: Buffer.concat([nonce, cipher.getAuthTag(), body]) };
    },
    async unwrap(key: WrappedKey, context) {
      const kek = keyring.keys.get(key.kekVersion);
      if (key.kekId !== keyring.id || !kek) {
        throw new CofferError('failed_precondition', `KEK ${key.kekId} version ${key.kekVersion} is not in the keyring`);
      }
      if (key.wrapped.length !== NONCE_BYTES + TAG_BYTES + KEY_BYTES) throw new CofferError('internal', 'wrapped data key has the wrong length');
      const decipher = createDecipheriv('aes-256-gcm', kek, key.wrapped.subarray(0, NONCE_BYTES));
      decipher.setAAD(aad(key.kekVersion, context));
      decipher.setAuthTag(key.wrapped.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
      try {
        return Buffer.concat([decipher.update(key.wrapped.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]);
      } catch {
        throw new CofferError('internal', 'data key could not be unwrapped');
      }
    },
  };
}

/** Reads and parses a keyring file. */
export async function loadLocalKms(path: string): Promise<KeyManagementService> {
  return createLocalKms(parseKeyring(await readFile(path, 'utf8')));
}
