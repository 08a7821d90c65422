import type { RuntimeDatabase, NullableTimestamp, Timestamp } from '@coffer/runtime';

export interface SecretVersionsTable {
  coordinate: string;
  base_coordinate: string;
  workspace_id: string;
  version: number;
  state: 'active' | 'destroyed' | 'expired';
  ciphertext: Buffer;
  data_key_id: string | null;
  kek_id: string | null;
  kek_version: number | null;
  expires_at: NullableTimestamp;
  created_at: Timestamp;
  created_by: string;
  destroyed_at: NullableTimestamp;
  owner_id: string | null;
  owner_workspace_id: string | null;
  write_id: string | null;
}

export interface KekVersionsTable {
  kek_id: string;
  version: number;
  state: string;
  observed_at: Timestamp;
}

export interface DataKeysTable {
  data_key_id: string;
  coordinate: string;
  kek_id: string;
  kek_version: number;
  wrapped: Buffer;
  created_at: Timestamp;
}

/** The secrets service's schema: the event store, the job lease and the secrets read models. */
export interface SecretsDatabase extends RuntimeDatabase {
  secret_versions: SecretVersionsTable;
  kek_versions: KekVersionsTable;
  data_keys: DataKeysTable;
}
