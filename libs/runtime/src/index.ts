export { checkCommonSettings, cofferEnvironments, commonEnv, inTheSamePass, metricsAddressSetting, migrationModes, migrationModeSetting, mtlsFromEnv, parseEnv, SettingsError, sqlIdentifier, type MigrationMode } from './env';
export {
  applyMigrations,
  assertMigrationsCurrent,
  MIGRATION_LOCK_TABLE,
  MIGRATION_TABLE,
  MigrationFailedError,
  PendingMigrationsError,
  pendingMigrations,
  serviceMigrator,
  type SchemaMigration,
  type ServiceMigrations,
} from './migrations';
export { parseByteSize, parseDuration, streamEnv, streamSettingsFromEnv } from './stream-env';
export { createDatabase, type DatabaseOptions, type NullableTimestamp, type Timestamp } from './database';
export { startRuntime, type RuntimeDatabase, type RuntimeOptions, type ServiceRuntime } from './runtime';
export { announceListening, describeStartupError, failStartup, loadSettingsOrExit, onShutdown, startBackgroundJobs, type BackgroundJobsOptions } from './lifecycle';
export { DEFAULT_STARTUP_WAIT_MS, STARTUP_WAIT_SETTING, StartupWaitError, defaultStartupRetryable, waitForDependency, type StartupWaitOptions } from './startup-wait';
export { jwksFromAuth } from './jwks';
export { REVOCATIONS_NOT_LOADED, startTokenVerification, watchRevocations, type RevocationWatch, type TokenVerificationOptions, type WatchRevocationsOptions } from './revocations';
export { logSecurityFindings, securityFindings, type SecurityFinding } from './security-findings';
export { createJobLease, createJobLeaseTable, migrateJobLease, type BackgroundJobRunsTable, type JobLease, type JobLeaseDatabase, type LeaseOutcome } from './job-lease';
export { startOpsEndpoint, type OpsEndpointOptions } from './ops-endpoint';
