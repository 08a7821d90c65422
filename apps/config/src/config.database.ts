import type { Generated } from 'kysely';
import type { NullableTimestamp, RuntimeDatabase, Timestamp } from '@coffer/runtime';
import type { ActorType } from './domain/actor.decider';

export interface WorkspacesTable {
  workspace_id: string;
  name: string;
  version: number;
  created_at: Timestamp;
  deleted: Generated<boolean>;
  organization_id: string | null;
  external_user_id: string | null;
}

export interface ConnectorDefinitionsTable {
  definition_id: string;
  name: string;
  actor_type: ActorType;
  connector: string;
  /** jsonb: read parsed, written as JSON text. */
  spec: unknown;
  version: number;
  registered_at: Timestamp;
  deleted: Generated<boolean>;
}

export interface ActorsTable {
  actor_id: string;
  workspace_id: string;
  definition_id: string;
  actor_type: ActorType;
  name: string;
  partial_config: unknown;
  version: number;
  deleted: Generated<boolean>;
  updated_at: Timestamp;
}

export interface SecretShreddingTable {
  coordinate: string;
  workspace_id: string;
  actor_id: string | null;
  reason: string;
  recorded_at: Timestamp;
  attempts: Generated<number>;
  next_attempt_at: Timestamp;
  last_error: string | null;
  write_id: string | null;
}

export interface CredentialRevocationsTable {
  actor_id: string;
  workspace_id: string;
  partial_config: unknown;
  oauth: unknown;
  requested_at: Timestamp;
  hold_until: Timestamp;
}

export interface SecretWriteIntentsTable {
  intent_id: string;
  workspace_id: string;
  actor_id: string;
  operation: 'create' | 'update' | 'rollback';
  coordinates: string[];
  recorded_at: Timestamp;
}

export interface ConnectionsTable {
  connection_id: string;
  workspace_id: string;
  source_id: string;
  destination_id: string;
  name: string;
  version: number;
  created_at: Timestamp;
  deleted: Generated<boolean>;
}

/** The config service's schema: the event store, the job lease and config's read models. */
export interface OauthFlowsTable {
  flow_id: string;
  state_hash: string;
  workspace_id: string;
  caller: string;
  actor_id: string;
  definition_id: string;
  name: string;
  /** jsonb: the config without its credential fields. */
  partial_config: unknown;
  verifier_coordinate: string;
  redirect_uri: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  ended_at: NullableTimestamp;
  outcome: string | null;
  reauthorize: Generated<boolean>;
}

export interface ConfigDatabase extends RuntimeDatabase {
  workspaces: WorkspacesTable;
  connector_definitions: ConnectorDefinitionsTable;
  actors: ActorsTable;
  secret_shredding: SecretShreddingTable;
  credential_revocations: CredentialRevocationsTable;
  secret_write_intents: SecretWriteIntentsTable;
  connections: ConnectionsTable;
  oauth_flows: OauthFlowsTable;
}
