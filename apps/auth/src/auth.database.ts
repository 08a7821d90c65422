import type { RuntimeDatabase, NullableTimestamp, Timestamp } from '@coffer/runtime';

export interface ServiceIdentitiesTable {
  client_id: string;
  role: string;
  secret_hash: string;
  updated_at: Timestamp;
  revoked_at: NullableTimestamp;
}

export interface LoginAttemptsTable {
  key_hash: string;
  failures: number;
  in_flight: number;
  window_started_at: Timestamp;
  locked_until: NullableTimestamp;
  updated_at: Timestamp;
}

export interface SigningKeysTable {
  kid: string;
  /** jsonb: read parsed, written as JSON text. */
  public_jwk: unknown;
  sealed_private_jwk: string;
  created_at: Timestamp;
  retire_at: NullableTimestamp;
  activate_at: NullableTimestamp;
}

export interface OrganizationsTable {
  organization_id: string;
  name: string;
  created_at: Timestamp;
}

export interface ApplicationsTable {
  client_id: string;
  organization_id: string;
  name: string;
  /** jsonb: an array of origins. */
  allowed_origins: unknown;
  secret_hash: string;
  previous_secret_hash: string | null;
  previous_valid_until: NullableTimestamp;
  disabled_at: NullableTimestamp;
  version: number;
}

export interface EndUserWorkspacesTable {
  organization_id: string;
  external_user_id: string;
  workspace_id: string;
}

/** The auth service's schema: the event store, the job lease and auth's read models. */
export interface AuthDatabase extends RuntimeDatabase {
  service_identities: ServiceIdentitiesTable;
  login_attempts: LoginAttemptsTable;
  signing_keys: SigningKeysTable;
  organizations: OrganizationsTable;
  applications: ApplicationsTable;
  end_user_workspaces: EndUserWorkspacesTable;
}
