import * as ev from './gen/coffer/events/v1/events';

/** The four services, each owning one JetStream stream and one subject namespace. */
export type ServiceName = 'auth' | 'config' | 'secrets' | 'sync';

/** Encode/decode functions of a published event body (proto3 JSON). */
export interface EventCodec<T> {
  toJSON(message: T): unknown;
  fromJSON(object: unknown): T;
}

interface IntegrationEventDef<T> {
  service: ServiceName;
  /** Subject tokens after `<root>.<service>.`, e.g. `secret.version_written`. */
  subject: string;
  codec: EventCodec<T>;
}

function def<T>(service: ServiceName, subject: string, codec: EventCodec<T>): IntegrationEventDef<T> {
  return { service, subject, codec };
}

/** Every integration event Coffer publishes, by its proto message name. */
export const integrationEvents = {
  SecretVersionWritten: def('secrets', 'secret.version_written', ev.SecretVersionWritten),
  SecretVersionDestroyed: def('secrets', 'secret.version_destroyed', ev.SecretVersionDestroyed),
  // Hydrates are audited in batches: one message lists the hydrates of one audit append.
  SecretsHydratedBatch: def('secrets', 'secret.hydrated_batch', ev.SecretsHydratedBatch),
  SecretExpired: def('secrets', 'secret.expired', ev.SecretExpired),
  DataKeyRewrapped: def('secrets', 'secret.data_key_rewrapped', ev.DataKeyRewrapped),
  KeyEncryptionKeyRotated: def('secrets', 'kek.rotated', ev.KeyEncryptionKeyRotated),
  KeyEncryptionKeyRetired: def('secrets', 'kek.retired', ev.KeyEncryptionKeyRetired),
  WorkspaceCreated: def('config', 'workspace.created', ev.WorkspaceCreated),
  WorkspaceDeleted: def('config', 'workspace.deleted', ev.WorkspaceDeleted),
  ConnectionDeleted: def('config', 'connection.deleted', ev.ConnectionDeleted),
  ConnectorDefinitionRegistered: def('config', 'definition.registered', ev.ConnectorDefinitionRegistered),
  // Sources, destinations and webhook configs share their bodies (the Actor* messages, partial configs only).
  SourceCreated: def('config', 'source.created', ev.ActorCreated),
  SourceConfigUpdated: def('config', 'source.config_updated', ev.ActorConfigUpdated),
  SourceDeleted: def('config', 'source.deleted', ev.ActorDeleted),
  DestinationCreated: def('config', 'destination.created', ev.ActorCreated),
  DestinationConfigUpdated: def('config', 'destination.config_updated', ev.ActorConfigUpdated),
  DestinationDeleted: def('config', 'destination.deleted', ev.ActorDeleted),
  WebhookConfigCreated: def('config', 'webhook.created', ev.ActorCreated),
  WebhookConfigUpdated: def('config', 'webhook.config_updated', ev.ActorConfigUpdated),
  WebhookConfigDeleted: def('config', 'webhook.deleted', ev.ActorDeleted),
  ConnectionCreated: def('config', 'connection.created', ev.ConnectionCreated),
  SyncRequested: def('config', 'connection.sync_requested', ev.SyncRequested),
  CheckRequested: def('config', 'check.requested', ev.CheckRequested),
  CredentialRevocationRequested: def('config', 'credential.revocation_requested', ev.CredentialRevocationRequested),
  CheckCompleted: def('sync', 'check.completed', ev.CheckCompleted),
  SyncStarted: def('sync', 'job.started', ev.SyncStarted),
  SyncSucceeded: def('sync', 'job.succeeded', ev.SyncSucceeded),
  SyncFailed: def('sync', 'job.failed', ev.SyncFailed),
  SyncCancelled: def('sync', 'job.cancelled', ev.SyncCancelled),
  SyncJobDeadLettered: def('sync', 'dead_letter.sync_job', ev.SyncJobDeadLettered),
  CredentialRefreshed: def('sync', 'credential.refreshed', ev.CredentialRefreshed),
  CredentialRefreshFailed: def('sync', 'credential.refresh_failed', ev.CredentialRefreshFailed),
  CredentialNeedsReauthorization: def('sync', 'credential.needs_reauthorization', ev.CredentialNeedsReauthorization),
  CredentialRevokedAtProvider: def('sync', 'credential.revoked_at_provider', ev.CredentialRevokedAtProvider),
  CredentialRevocationFailed: def('sync', 'credential.revocation_failed', ev.CredentialRevocationFailed),
  ServiceIdentityRegistered: def('auth', 'service_identity.registered', ev.ServiceIdentityRegistered),
  LoginFailed: def('auth', 'client.login_failed', ev.LoginFailed),
  ClientLocked: def('auth', 'client.locked', ev.ClientLocked),
  OrganizationCreated: def('auth', 'organization.created', ev.OrganizationCreated),
  ApplicationCreated: def('auth', 'application.created', ev.ApplicationCreated),
  ApplicationSecretRotated: def('auth', 'application.secret_rotated', ev.ApplicationSecretRotated),
  // Revocations share one subject prefix so each service follows them with one filter (NATS 2.9 has no multi-filter consumers).
  ApplicationDisabled: def('auth', 'revocation.application_disabled', ev.ApplicationDisabled),
  TokenRevoked: def('auth', 'revocation.token_revoked', ev.TokenRevoked),
  ServiceIdentityRevoked: def('auth', 'revocation.service_identity_revoked', ev.ServiceIdentityRevoked),
  SigningKeyRotated: def('auth', 'signing_key.rotated', ev.SigningKeyRotated),
} as const;

/** Name of an integration event, e.g. `SecretVersionWritten`. */
export type IntegrationEventName = keyof typeof integrationEvents;

/** The message type carried by an integration event. */
export type IntegrationEventMessage<N extends IntegrationEventName> =
  (typeof integrationEvents)[N] extends IntegrationEventDef<infer T> ? T : never;

/** Where a deployment's streams and subjects live; tests use a unique one each. */
export interface MessagingNamespace {
  /** First subject token, default `coffer`. */
  subjectRoot: string;
  /** Stream name prefix, default `COFFER`. */
  streamPrefix: string;
}

/** The default namespace: subjects `coffer.>` and streams `COFFER_*`. */
export const defaultNamespace: MessagingNamespace = { subjectRoot: 'coffer', streamPrefix: 'COFFER' };

/** The CloudEvents type of an event, e.g. `coffer.secrets.v1.SecretVersionWritten`. */
export function eventType(name: IntegrationEventName): string {
  return `coffer.${integrationEvents[name].service}.v1.${name}`;
}

/** The NATS subject an event is published on. */
export function eventSubject(ns: MessagingNamespace, name: IntegrationEventName): string {
  const d = integrationEvents[name];
  return `${ns.subjectRoot}.${d.service}.${d.subject}`;
}

/** The JetStream stream of one service, e.g. `COFFER_SECRETS`. */
export function streamName(ns: MessagingNamespace, service: ServiceName): string {
  return `${ns.streamPrefix}_${service.toUpperCase()}`;
}

/** The one subject filter under which auth publishes every revocation (token, application, service identity). */
export function revocationSubjects(ns: MessagingNamespace): string {
  return `${ns.subjectRoot}.auth.revocation.>`;
}

/** The subjects one service's stream holds (`<root>.<service>.>`). */
export function streamSubjects(ns: MessagingNamespace, service: ServiceName): string[] {
  return [`${ns.subjectRoot}.${service}.>`];
}

/** The event name behind a CloudEvents type, or undefined when it is not one of Coffer's. */
export function eventNameOfType(type: string): IntegrationEventName | undefined {
  const name = type.split('.').pop() as IntegrationEventName;
  return name in integrationEvents && eventType(name) === type ? name : undefined;
}
