import { KeyManagementServiceClient } from '@google-cloud/kms';
import { CofferError } from '@coffer/contracts';
import { DATA_KEY_BYTES, type KekVersion, type KeyManagementService, type WrappedKey } from './kms';

/** Options of {@link createGcpKms}. */
export interface GcpKmsOptions {
  client: KeyManagementServiceClient;
  /** `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`: an ENCRYPT_DECRYPT CryptoKey; its versions are the KEK versions. */
  keyName: string;
}

const KEY_NAME = /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+$/;

// gRPC status and code only: Cloud KMS messages can quote resource names and parameters.
function gcpReason(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? `gRPC status ${code}` : 'Cloud KMS error';
}

const versionOf = (name: string | null | undefined) => Number(String(name ?? '').split('/').pop());

/**
 * The `gcp-kms` provider: the KEK is a Cloud KMS CryptoKey and its CryptoKeyVersions are the KEK
 * versions; the key material never leaves Google. Encrypt goes to the CryptoKey (Cloud KMS uses
 * its primary version and names it in the response); Decrypt finds the version from the
 * ciphertext. The context is bound as additionalAuthenticatedData. Retiring destroys the version.
 */
export async function createGcpKms(options: GcpKmsOptions): Promise<KeyManagementService> {
  const { client, keyName } = options;
  if (!KEY_NAME.test(keyName)) throw new CofferError('invalid_argument', 'the Cloud KMS key name must be projects/…/locations/…/keyRings/…/cryptoKeys/…');
  let primary = 0;
  let states = new Map<number, string>();

  async function scan(): Promise<void> {
    const [key] = await client.getCryptoKey({ name: keyName });
    const [list] = await client.listCryptoKeyVersions({ parent: keyName });
    primary = versionOf(key.primary?.name);
    states = new Map(list.map((v) => [versionOf(v.name), String(v.state)]));
  }

  try {
    await scan();
  } catch (err) {
    throw new CofferError('unavailable', `Cloud KMS could not be reached (${gcpReason(err)})`);
  }
  if (!primary) throw new CofferError('failed_precondition', 'the Cloud KMS key has no primary version (is it an ENCRYPT_DECRYPT key?)');

  return {
    provider: 'gcp-kms',
    kekId: keyName,
    primaryVersion: () => primary,
    async wrap(dataKey, context) {
      if (dataKey.length !== DATA_KEY_BYTES) throw new CofferError('invalid_argument', `data key must be ${DATA_KEY_BYTES} bytes`);
      try {
        const [out] = await client.encrypt({ name: keyName, plaintext: dataKey, additionalAuthenticatedData: Buffer.from(context, 'utf8') });
        if (!out.ciphertext) throw new Error('empty ciphertext');
        return { kekId: keyName, kekVersion: versionOf(out.name) || primary, wrapped: Buffer.from(out.ciphertext as Uint8Array) };
      } catch (err) {
        throw new CofferError('unavailable', `Cloud KMS could not wrap the data key (${gcpReason(err)})`);
      }
    },
    async unwrap(key: WrappedKey, context) {
      if (key.kekId !== keyName || states.get(key.kekVersion) !== 'ENABLED') {
        throw new CofferError('failed_precondition', `KEK ${key.kekId} version ${key.kekVersion} is not available`);
      }
      try {
        const [out] = await client.decrypt({ name: keyName, ciphertext: key.wrapped, additionalAuthenticatedData: Buffer.from(context, 'utf8') });
        const plain = Buffer.from((out.plaintext as Uint8Array | null) ?? []);
        if (plain.length !== DATA_KEY_BYTES) throw new Error('bad plaintext');
        return plain;
      } catch {
        throw new CofferError('internal', 'data key could not be unwrapped');
      }
    },
    async createVersion() {
      const [created] = await client.createCryptoKeyVersion({ parent: keyName, cryptoKeyVersion: {} });
      const version = versionOf(created.name);
      await client.updateCryptoKeyPrimaryVersion({ name: keyName, cryptoKeyVersionId: String(version) });
      await scan();
      return version;
    },
    async retireVersion(version) {
      if (version === primary) throw new CofferError('failed_precondition', 'the primary KEK version cannot be retired');
      if (states.get(version) !== 'ENABLED') throw new CofferError('not_found', `KEK version ${version} is not live`);
      await client.destroyCryptoKeyVersion({ name: `${keyName}/cryptoKeyVersions/${version}` });
      await scan();
    },
    async versions(): Promise<KekVersion[]> {
      return [...states]
        .map(([version, state]) => ({ version, state: state !== 'ENABLED' ? ('retired' as const) : version === primary ? ('primary' as const) : ('active' as const) }))
        .sort((a, b) => a.version - b.version);
    },
    refresh: scan,
    async close() {
      await client.close();
    },
  };
}

/** The `gcp-kms` provider from settings (credentials come from Google's application default chain). */
export function loadGcpKms(settings: { keyName: string; apiEndpoint?: string }): Promise<KeyManagementService> {
  return createGcpKms({ client: new KeyManagementServiceClient(settings.apiEndpoint ? { apiEndpoint: settings.apiEndpoint } : {}), keyName: settings.keyName });
}
