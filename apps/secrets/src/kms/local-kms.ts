import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { CofferError } from '@coffer/contracts';
import { DATA_KEY_BYTES, type KekVersion, type KeyManagementService, type WrappedKey } from './kms';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

const keyringSchema = z.object({
  id: z.string().min(1).default('local'),
  primaryVersion: z.number().int().positive(),
  keys: z.array(z.object({ version: z.number().int().positive(), key: z.string().min(1) })).min(1),
  retired: z.array(z.number().int().positive()).default([]),
});

/** The parsed contents of a local keyring file. */
export interface LocalKeyring {
  id: string;
  primaryVersion: number;
  keys: Map<number, Buffer>;
  /** Versions whose key was removed by retirement. */
  retired: number[];
}

/** Parses a keyring document: `{"id","primaryVersion","keys":[{"version":1,"key":"<base64 of 32 bytes>"}],"retired":[]}`. */
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
  return { id: parsed.data.id, primaryVersion: parsed.data.primaryVersion, keys, retired: parsed.data.retired };
}

/** The keyring as a document, for writing back after a rotation or retirement. */
export function serializeKeyring(keyring: LocalKeyring): string {
  return JSON.stringify({
    id: keyring.id,
    primaryVersion: keyring.primaryVersion,
    keys: [...keyring.keys].map(([version, key]) => ({ version, key: key.toString('base64') })),
    retired: keyring.retired,
  });
}

/** Makes a new keyring document with one random key, for development and tests. */
export function generateKeyringDocument(id = 'local'): string {
  return JSON.stringify({ id, primaryVersion: 1, keys: [{ version: 1, key: randomBytes(KEY_BYTES).toString('base64') }] });
}

/**
 * The `local` KMS provider: a versioned keyring from a key file, for development. Data keys are
 * wrapped with AES-256-GCM under the KEK, with the caller's context as additional authenticated
 * data. Rotation and retirement rewrite the file atomically (`persist`), when one is given.
 */
export function createLocalKms(
  keyring: LocalKeyring,
  persist?: (document: string) => Promise<void>,
  reload?: () => Promise<LocalKeyring>,
): KeyManagementService {
  const aad = (version: number, context: string) => Buffer.from(`coffer-dek|${keyring.id}|${version}|${context}`, 'utf8');
  let queue: Promise<unknown> = Promise.resolve();
  // Rotation and retirement change the file: one at a time.
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn, fn);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    provider: 'local',
    kekId: keyring.id,
    primaryVersion: () => keyring.primaryVersion,
    async wrap(dataKey, context) {
      if (dataKey.length !== DATA_KEY_BYTES) throw new CofferError('invalid_argument', `data key must be ${DATA_KEY_BYTES} bytes`);
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
    createVersion: () =>
      serial(async () => {
        const version = Math.max(...keyring.keys.keys(), ...keyring.retired) + 1;
        const next: LocalKeyring = { ...keyring, keys: new Map(keyring.keys).set(version, randomBytes(KEY_BYTES)), primaryVersion: version };
        await persist?.(serializeKeyring(next));
        keyring.keys = next.keys;
        keyring.primaryVersion = version;
        return version;
      }),
    retireVersion: (version) =>
      serial(async () => {
        if (version === keyring.primaryVersion) throw new CofferError('failed_precondition', 'the primary KEK version cannot be retired');
        if (!keyring.keys.has(version)) throw new CofferError('not_found', `KEK version ${version} is not in the keyring`);
        const keys = new Map(keyring.keys);
        const old = keys.get(version)!;
        keys.delete(version);
        const retired = [...keyring.retired, version].sort((a, b) => a - b);
        await persist?.(serializeKeyring({ ...keyring, keys, retired }));
        keyring.keys = keys;
        keyring.retired = retired;
        old.fill(0);
      }),
    async versions(): Promise<KekVersion[]> {
      const live: KekVersion[] = [...keyring.keys.keys()].map((version) => ({ version, state: version === keyring.primaryVersion ? 'primary' : 'active' }));
      return [...live, ...keyring.retired.map((version) => ({ version, state: 'retired' as const }))].sort((a, b) => a.version - b.version);
    },
    async close() {
      for (const key of keyring.keys.values()) key.fill(0);
    },
    refresh: reload
      ? () =>
          serial(async () => {
            const fresh = await reload();
            if (fresh.id !== keyring.id) throw new CofferError('failed_precondition', 'the keyring file now holds another KEK id');
            keyring.keys = fresh.keys;
            keyring.primaryVersion = fresh.primaryVersion;
            keyring.retired = fresh.retired;
          })
      : undefined,
  };
}

/** Reads a keyring file; rotations and retirements are written back to it (write, then rename). */
export async function loadLocalKms(path: string): Promise<KeyManagementService> {
  const read = async () => parseKeyring(await readFile(path, 'utf8'));
  return createLocalKms(
    await read(),
    async (document) => {
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, document, { mode: 0o600 });
      await rename(tmp, path);
    },
    read,
  );
}
