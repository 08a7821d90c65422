import { createEventStoreTables } from '@coffer/event-store';
import { createJobLeaseTable, type ServiceMigrations } from '@coffer/runtime';
import { migrateJobKindsAndStreamState, migrateSyncReadModel } from './sync.postgres';

/**
 * The sync worker's schema changes, in order (`coffer migrate`, or start-up with
 * COFFER_MIGRATIONS=apply). 0001 makes what start-up made before migrations were numbered, with
 * `if not exists` throughout, so it adopts a schema an earlier release made.
 */
export const syncMigrations: ServiceMigrations = {
  '0001_initial': async (trx, schema) => {
    await createEventStoreTables(trx, schema);
    await migrateSyncReadModel(trx, schema);
    await createJobLeaseTable(trx, schema);
  },
  '0002_job_kinds_and_stream_state': (trx, schema) => migrateJobKindsAndStreamState(trx, schema),
};
