export {
  binariesRunnableBy,
  checkReachable,
  ensureDatabase,
  findPostgresBinaries,
  postgresBinaryPackage,
  postgresUser,
  startEmbeddedPostgres,
  type EmbeddedPostgres,
  type EmbeddedPostgresOptions,
  type PostgresBinaries,
  type PostgresUser,
} from './embedded-postgres';
export { findOnPath, natsServerMissing, startNatsServer, type NatsServer, type NatsServerOptions } from './nats-server';
export { signalGroup, spawnManaged, type ManagedProcess, type ManagedProcessOptions } from './managed-process';
