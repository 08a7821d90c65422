export { checkCommonSettings, cofferEnvironments, commonEnv, inTheSamePass, mtlsFromEnv, parseEnv, SettingsError, sqlIdentifier } from './env';
export { createDatabase, type DatabaseOptions } from './database';
export { startRuntime, type RuntimeOptions, type ServiceRuntime } from './runtime';
export { announceListening, describeStartupError, failStartup, loadSettingsOrExit, onShutdown, startBackgroundJobs } from './lifecycle';
export { jwksFromAuth } from './jwks';
export { REVOCATIONS_NOT_LOADED, startTokenVerification, watchRevocations, type RevocationWatch, type TokenVerificationOptions, type WatchRevocationsOptions } from './revocations';
export { logSecurityFindings, securityFindings, type SecurityFinding } from './security-findings';
