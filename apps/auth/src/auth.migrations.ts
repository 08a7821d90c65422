import { createEventStoreTables } from '@coffer/event-store';
import { createJobLeaseTable, type ServiceMigrations } from '@coffer/runtime';
import { migrateAuthReadModel } from './auth.postgres';

/**
 * The auth service's schema changes, in order (`coffer migrate`, or start-up with
 * COFFER_MIGRATIONS=apply). 0001 makes what start-up made before migrations were numbered, with
 * `if not exists` throughout, so it adopts a schema an earlier release made.
 */
export const authMigrations: ServiceMigrations = {
  '0001_initial': async (trx, schema) => {
    await createEventStoreTables(trx, schema);
    await migrateAuthReadModel(trx, schema);
    await createJobLeaseTable(trx, schema);
  },
};
