import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { CofferError } from '@coffer/contracts';
import { DATA_KEY_BYTES, type KekVersion, type KeyManagementService, type WrappedKey } from './kms';

/** Where the KEK lives: a PKCS#11 module, a token by label, the user PIN, and the KEK's label prefix. */
export interface Pkcs11KmsOptions {
  /** Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  tokenLabel: string;
  pin: string;
  /** Each KEK version is an AES-256 key labelled `<kekLabel>-v<n>` (default `coffer-kek`). */
  kekLabel?: string;
}

const IV_BYTES = 12;
const TAG_BITS = 128;

interface LoadedModule {
  pkcs11: pkcs11js.PKCS11;
  users: number;
}

// C_Initialize may run once per process and module; providers share it and the last close finalizes.
const modules = new Map<string, LoadedModule>();

function acquire(library: string): pkcs11js.PKCS11 {
  const loaded = modules.get(library);
  if (loaded) {
    loaded.users++;
    return loaded.pkcs11;
  }
  const pkcs11 = new pkcs11js.PKCS11();
  pkcs11.load(library);
  try {
    pkcs11.C_Initialize();
  } catch (err) {
    if (!String(err).includes('CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw err;
  }
  modules.set(library, { pkcs11, users: 1 });
  return pkcs11;
}

function release(library: string): void {
  const loaded = modules.get(library);
  if (!loaded || --loaded.users > 0) return;
  modules.delete(library);
  loaded.pkcs11.C_Finalize();
  loaded.pkcs11.close();
}

/** Names a Cryptoki failure by its CKR_ code only; PKCS#11 errors never carry key material, but stay terse. */
function ckr(err: unknown): string {
  return /CKR_[A-Z_]+/.exec(String(err))?.[0] ?? 'PKCS#11 error';
}

/**
 * The `pkcs11` KMS provider: the KEK is an AES-256 key generated inside the token (sensitive, never
 * extractable); data keys are wrapped with CKM_AES_GCM inside the token, the context bound as AAD.
 * A retired version's key object is destroyed and a `<label>-v<n>-retired` data object remembers it.
 */
export function createPkcs11Kms(options: Pkcs11KmsOptions): KeyManagementService {
  const label = options.kekLabel ?? 'coffer-kek';
  const pkcs11 = acquire(options.library);
  let session: Buffer;
  try {
    const slot = pkcs11.C_GetSlotList(true).find((s) => pkcs11.C_GetTokenInfo(s).label.trim() === options.tokenLabel);
    if (!slot) throw new CofferError('failed_precondition', `no PKCS#11 token labelled ${options.tokenLabel}`);
    session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    try {
      pkcs11.C_Login(session, pkcs11js.CKU_USER, options.pin);
    } catch (err) {
      if (ckr(err) !== 'CKR_USER_ALREADY_LOGGED_IN') throw new CofferError('failed_precondition', `PKCS#11 login failed (${ckr(err)})`);
    }
  } catch (err) {
    release(options.library);
    throw err;
  }

  const find = (template: pkcs11js.Template): Buffer[] => {
    pkcs11.C_FindObjectsInit(session, template);
    try {
      const found: Buffer[] = [];
      for (let h = pkcs11.C_FindObjects(session); h; h = pkcs11.C_FindObjects(session)) found.push(h);
      return found;
    } finally {
      pkcs11.C_FindObjectsFinal(session);
    }
  };

  const labelOf = (h: Buffer) => String(pkcs11.C_GetAttributeValue(session, h, [{ type: pkcs11js.CKA_LABEL }])[0]!.value ?? '');
  const versionPattern = new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-v([0-9]+)(-retired)?$`);

  function scan(): { keys: Map<number, Buffer>; retired: number[] } {
    const keys = new Map<number, Buffer>();
    for (const h of find([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }])) {
      const m = versionPattern.exec(labelOf(h));
      if (m && !m[2]) keys.set(Number(m[1]), h);
    }
    const retired: number[] = [];
    for (const h of find([{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA }])) {
      const m = versionPattern.exec(labelOf(h));
      if (m && m[2]) retired.push(Number(m[1]));
    }
    return { keys, retired };
  }

  let state = scan();
  const primary = () => Math.max(0, ...state.keys.keys());

  function generate(version: number): void {
    pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_LABEL, value: `${label}-v${version}` },
    ]);
    state = scan();
  }

  if (state.keys.size === 0) generate(Math.max(0, ...state.retired) + 1);

  const aad = (version: number, context: string) => Buffer.from(`coffer-dek|${label}|${version}|${context}`, 'utf8');
  const gcm = (iv: Buffer, version: number, context: string): pkcs11js.Mechanism => ({
    mechanism: pkcs11js.CKM_AES_GCM,
    parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv, ivBits: IV_BYTES * 8, aad: aad(version, context), tagBits: TAG_BITS } as pkcs11js.AesGCM,
  });

  return {
    provider: 'pkcs11',
    kekId: `${options.tokenLabel}/${label}`,
    primaryVersion: primary,
    async wrap(dataKey, context) {
      if (dataKey.length !== DATA_KEY_BYTES) throw new CofferError('invalid_argument', `data key must be ${DATA_KEY_BYTES} bytes`);
      const version = primary();
      const iv = randomBytes(IV_BYTES);
      try {
        pkcs11.C_EncryptInit(session, gcm(iv, version, context), state.keys.get(version)!);
        const out = pkcs11.C_Encrypt(session, dataKey, Buffer.alloc(DATA_KEY_BYTES + TAG_BITS / 8));
        return { kekId: `${options.tokenLabel}/${label}`, kekVersion: version, wrapped: Buffer.concat([iv, out]) };
      } catch (err) {
        throw new CofferError('internal', `PKCS#11 wrap failed (${ckr(err)})`);
      }
    },
    async unwrap(key: WrappedKey, context) {
      const handle = state.keys.get(key.kekVersion);
      if (key.kekId !== `${options.tokenLabel}/${label}` || !handle) {
        throw new CofferError('failed_precondition', `KEK ${key.kekId} version ${key.kekVersion} is not in the token`);
      }
      if (key.wrapped.length !== IV_BYTES + DATA_KEY_BYTES + TAG_BITS / 8) throw new CofferError('internal', 'wrapped data key has the wrong length');
      try {
        pkcs11.C_DecryptInit(session, gcm(key.wrapped.subarray(0, IV_BYTES), key.kekVersion, context), handle);
        return Buffer.from(pkcs11.C_Decrypt(session, key.wrapped.subarray(IV_BYTES), Buffer.alloc(DATA_KEY_BYTES + TAG_BITS / 8)));
      } catch {
        throw new CofferError('internal', 'data key could not be unwrapped');
      }
    },
    async createVersion() {
      const version = Math.max(0, ...state.keys.keys(), ...state.retired) + 1;
      generate(version);
      return version;
    },
    async retireVersion(version) {
      if (version === primary()) throw new CofferError('failed_precondition', 'the primary KEK version cannot be retired');
      const handle = state.keys.get(version);
      if (!handle) throw new CofferError('not_found', `KEK version ${version} is not in the token`);
      pkcs11.C_CreateObject(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_LABEL, value: `${label}-v${version}-retired` },
        { type: pkcs11js.CKA_VALUE, value: Buffer.from(new Date().toISOString()) },
      ]);
      pkcs11.C_DestroyObject(session, handle);
      state = scan();
    },
    async versions(): Promise<KekVersion[]> {
      const p = primary();
      return [
        ...[...state.keys.keys()].map((version) => ({ version, state: version === p ? ('primary' as const) : ('active' as const) })),
        ...state.retired.map((version) => ({ version, state: 'retired' as const })),
      ].sort((a, b) => a.version - b.version);
    },
    async refresh() {
      state = scan();
    },
    async close() {
      try {
        pkcs11.C_CloseSession(session);
      } finally {
        release(options.library);
      }
    },
  };
}
