export { checkCommonSettings, cofferEnvironments, commonEnv, inTheSamePass, mtlsFromEnv, parseEnv, SettingsError, sqlIdentifier } from './env';
export { parseByteSize, parseDuration, streamEnv, streamSettingsFromEnv } from './stream-env';
export { createDatabase, type DatabaseOptions } from './database';
export { startRuntime, type RuntimeOptions, type ServiceRuntime } from './runtime';
export { announceListening, describeStartupError, failStartup, loadSettingsOrExit, onShutdown, startBackgroundJobs, type BackgroundJobsOptions } from './lifecycle';
export { DEFAULT_STARTUP_WAIT_MS, STARTUP_WAIT_SETTING, StartupWaitError, defaultStartupRetryable, waitForDependency, type StartupWaitOptions } from './startup-wait';
export { jwksFromAuth } from './jwks';
export { REVOCATIONS_NOT_LOADED, startTokenVerification, watchRevocations, type RevocationWatch, type TokenVerificationOptions, type WatchRevocationsOptions } from './revocations';
export { logSecurityFindings, securityFindings, type SecurityFinding } from './security-findings';
