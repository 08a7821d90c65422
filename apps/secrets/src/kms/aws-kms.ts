import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  KMSClient,
  ListAliasesCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { CofferError } from '@coffer/contracts';
import { DATA_KEY_BYTES, type KekVersion, type KeyManagementService, type WrappedKey } from './kms';

/** Options of {@link createAwsKms}. */
export interface AwsKmsOptions {
  client: KMSClient;
  /** Names the KEK: version n is the KMS key behind alias `alias/<kekId>-v<n>`. */
  kekId: string;
  /** Days a retired version waits in PendingDeletion before AWS deletes it (7-30). */
  deletionWindowDays?: number;
}

interface VersionKey {
  keyId: string;
  retired: boolean;
}

// AWS error names only: its messages can echo request parameters.
function awsReason(err: unknown): string {
  return err instanceof Error && /^[A-Za-z0-9]{1,64}$/.test(err.name) ? err.name : 'AWS KMS error';
}

/**
 * The `aws-kms` provider: each KEK version is its own symmetric AWS KMS key, found by its alias
 * `alias/<kekId>-v<n>`; the key material never leaves AWS. Data keys are wrapped with Encrypt
 * under the primary (highest live) version, the context bound as EncryptionContext. Retiring a
 * version schedules its key's deletion, after which AWS refuses to decrypt with it.
 */
export async function createAwsKms(options: AwsKmsOptions): Promise<KeyManagementService> {
  const { client, kekId } = options;
  if (!/^[A-Za-z0-9/_-]{1,200}$/.test(kekId)) throw new CofferError('invalid_argument', 'the AWS KEK id may hold letters, digits, / _ - only');
  const aliasPrefix = `alias/${kekId}-v`;
  let versions = new Map<number, VersionKey>();

  async function scan(): Promise<void> {
    const found = new Map<number, VersionKey>();
    let marker: string | undefined;
    do {
      const page = await client.send(new ListAliasesCommand({ Marker: marker, Limit: 100 }));
      for (const a of page.Aliases ?? []) {
        if (!a.AliasName?.startsWith(aliasPrefix) || !a.TargetKeyId) continue;
        const version = Number(a.AliasName.slice(aliasPrefix.length));
        if (!Number.isInteger(version) || version < 1) continue;
        const { KeyMetadata } = await client.send(new DescribeKeyCommand({ KeyId: a.TargetKeyId }));
        const state = KeyMetadata?.KeyState;
        found.set(version, { keyId: a.TargetKeyId, retired: state === 'PendingDeletion' || state === 'Disabled' || state === 'Unavailable' });
      }
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    versions = found;
  }

  const primary = () => Math.max(0, ...[...versions].filter(([, v]) => !v.retired).map(([n]) => n));
  const context = (c: string) => ({ coffer_context: c });

  async function createVersion(): Promise<number> {
    const version = Math.max(0, ...versions.keys()) + 1;
    const created = await client.send(
      new CreateKeyCommand({
        Description: `Coffer key-encryption key ${kekId} version ${version}`,
        KeySpec: 'SYMMETRIC_DEFAULT',
        KeyUsage: 'ENCRYPT_DECRYPT',
        Tags: [
          { TagKey: 'coffer-kek', TagValue: kekId },
          { TagKey: 'coffer-kek-version', TagValue: String(version) },
        ],
      }),
    );
    const keyId = created.KeyMetadata?.KeyId;
    if (!keyId) throw new CofferError('internal', 'AWS KMS created a key without an id');
    await client.send(new CreateAliasCommand({ AliasName: `${aliasPrefix}${version}`, TargetKeyId: keyId }));
    versions.set(version, { keyId, retired: false });
    return version;
  }

  try {
    await scan();
    if (primary() === 0) await createVersion();
  } catch (err) {
    if (err instanceof CofferError) throw err;
    throw new CofferError('unavailable', `AWS KMS could not be reached (${awsReason(err)})`);
  }

  return {
    provider: 'aws-kms',
    kekId,
    primaryVersion: primary,
    async wrap(dataKey, ctx) {
      if (dataKey.length !== DATA_KEY_BYTES) throw new CofferError('invalid_argument', `data key must be ${DATA_KEY_BYTES} bytes`);
      const version = primary();
      try {
        const out = await client.send(new EncryptCommand({ KeyId: versions.get(version)!.keyId, Plaintext: dataKey, EncryptionContext: context(ctx) }));
        if (!out.CiphertextBlob) throw new Error('empty ciphertext');
        return { kekId, kekVersion: version, wrapped: Buffer.from(out.CiphertextBlob) };
      } catch (err) {
        throw new CofferError('unavailable', `AWS KMS could not wrap the data key (${awsReason(err)})`);
      }
    },
    async unwrap(key: WrappedKey, ctx) {
      const v = versions.get(key.kekVersion);
      if (key.kekId !== kekId || !v || v.retired) throw new CofferError('failed_precondition', `KEK ${key.kekId} version ${key.kekVersion} is not available`);
      try {
        const out = await client.send(new DecryptCommand({ KeyId: v.keyId, CiphertextBlob: key.wrapped, EncryptionContext: context(ctx) }));
        if (!out.Plaintext || out.Plaintext.length !== DATA_KEY_BYTES) throw new Error('bad plaintext');
        return Buffer.from(out.Plaintext);
      } catch {
        throw new CofferError('internal', 'data key could not be unwrapped');
      }
    },
    createVersion,
    async retireVersion(version) {
      if (version === primary()) throw new CofferError('failed_precondition', 'the primary KEK version cannot be retired');
      const v = versions.get(version);
      if (!v || v.retired) throw new CofferError('not_found', `KEK version ${version} is not live`);
      await client.send(new ScheduleKeyDeletionCommand({ KeyId: v.keyId, PendingWindowInDays: options.deletionWindowDays ?? 7 }));
      v.retired = true;
    },
    async versions(): Promise<KekVersion[]> {
      const p = primary();
      return [...versions]
        .map(([version, v]) => ({ version, state: v.retired ? ('retired' as const) : version === p ? ('primary' as const) : ('active' as const) }))
        .sort((a, b) => a.version - b.version);
    },
    refresh: scan,
    async close() {
      client.destroy();
    },
  };
}

/** The `aws-kms` provider from settings: region, optional endpoint (VPC endpoint, tests), KEK id. */
export function loadAwsKms(settings: { region: string; endpoint?: string; kekId: string }): Promise<KeyManagementService> {
  return createAwsKms({ client: new KMSClient({ region: settings.region, endpoint: settings.endpoint }), kekId: settings.kekId });
}
