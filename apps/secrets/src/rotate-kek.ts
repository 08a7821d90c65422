import { createEventStore } from '@coffer/event-store';
import { createDatabase, loadSettingsOrExit } from '@coffer/runtime';
import { loadSecretsConfig } from './config';
import { loadKms } from './kms/load-kms';
import { secretsChainOf, secretsServiceFromConfig } from './secrets.service';
import type { SecretsDatabase } from './secrets.database';

/**
 * Operator command: `node --import tsx apps/secrets/src/rotate-kek.ts [--resume]` creates a new KEK
 * version (unless --resume) and re-wraps every live data key, with the secrets service's own
 * configuration. Safe to kill and run again with --resume. Prints one JSON line.
 */
const config = loadSettingsOrExit(() => loadSecretsConfig(process.env));
const db = createDatabase<SecretsDatabase>(config.DATABASE_URL, { max: 2 });
const kms = await loadKms(config);
try {
  // No cache: a one-off command re-wraps each key once.
  const service = secretsServiceFromConfig(config, { db, store: createEventStore(db, { schema: config.SECRETS_DB_SCHEMA, chainOf: secretsChainOf }), kms, cacheEntries: 0 });
  const result = await service.rotateKek(process.argv.includes('--resume'), { subject: process.env.USER ? `operator:${process.env.USER}` : 'operator' });
  process.stdout.write(`${JSON.stringify({ event: 'rotated', ...result })}\n`);
} finally {
  await kms.close();
  await db.destroy();
}
