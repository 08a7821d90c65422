import { randomUUID } from 'node:crypto';
import { createEventStore } from '@coffer/event-store';
import { createDatabase } from '@coffer/runtime';
import { loadSecretsConfig } from './config';
import { createDataKeyCache } from './data-key-cache';
import { loadKms } from './kms/load-kms';
import { createSecretsService } from './secrets.service';

/**
 * Operator command: `node --import tsx apps/secrets/src/rotate-kek.ts [--resume]` creates a new KEK
 * version (unless --resume) and re-wraps every live data key, with the secrets service's own
 * configuration. Safe to kill and run again with --resume. Prints one JSON line.
 */
const config = loadSecretsConfig(process.env);
const db = createDatabase(config.DATABASE_URL, { max: 2 });
const kms = await loadKms(config);
try {
  const service = createSecretsService({
    db,
    store: createEventStore(db, { schema: config.SECRETS_DB_SCHEMA }),
    kms,
    schema: config.SECRETS_DB_SCHEMA,
    coordinatePrefix: config.COFFER_COORDINATE_PREFIX,
    namespace: { subjectRoot: config.COFFER_SUBJECT_ROOT, streamPrefix: config.COFFER_STREAM_PREFIX },
    ephemeralTtlMs: config.SECRETS_EPHEMERAL_TTL_SECONDS * 1000,
    cache: createDataKeyCache({ maxEntries: 0, ttlMs: 1, clock: Date.now }),
    rotationPeriodMs: config.SECRETS_KEK_ROTATION_DAYS * 24 * 3600 * 1000,
    clock: () => new Date(),
    newId: randomUUID,
  });
  const result = await service.rotateKek(process.argv.includes('--resume'), { subject: process.env.USER ? `operator:${process.env.USER}` : 'operator' });
  process.stdout.write(`${JSON.stringify({ event: 'rotated', ...result })}\n`);
} finally {
  await kms.close();
  await db.destroy();
}
