export { commonEnv, parseEnv, sqlIdentifier } from './env';
export { createDatabase } from './database';
export { startRuntime, type RuntimeOptions, type ServiceRuntime } from './runtime';
export { announceListening, failStartup, onShutdown, startBackgroundJobs } from './lifecycle';
export { jwksFromAuth } from './jwks';
