import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { verifyEventChain, type EventStoreDatabase } from '@coffer/event-store';
import type { DoctorFinding } from './doctor-settings';
import type { StackService } from './stack';

/** One service's event log: where it lives. */
export interface ServiceLog {
  service: StackService;
  schema: string;
}

// pg_trigger.tgtype bits: ROW 1, BEFORE 2, DELETE 8, UPDATE 16, TRUNCATE 32.
const TRIGGER_BEFORE = 2;
const TRIGGER_OPS = { DELETE: 8, UPDATE: 16, TRUNCATE: 32 } as const;

/**
 * Whether the events table of a schema refuses change: an enabled BEFORE trigger whose function
 * raises covers UPDATE, DELETE and TRUNCATE, and no role but the table's owner holds those privileges
 * (the owner is held back by the trigger). Reads the catalog only; changes nothing.
 */
export async function eventsImmutability(db: QueryExecutorProvider, log: ServiceLog): Promise<DoctorFinding> {
  const base = { check: 'events-immutable', service: log.service } as const;
  const { rows: table } = await sql<{ owner: string }>`
    select pg_get_userbyid(c.relowner) as owner from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${log.schema} and c.relname = 'events' and c.relkind = 'r'`.execute(db);
  if (table.length === 0) return { ...base, severity: 'skip', message: `no events table in schema ${log.schema}: ${log.service} has not run against this database` };

  const { rows: triggers } = await sql<{ tgname: string; tgenabled: string; tgtype: number; raises: boolean }>`
    select t.tgname, t.tgenabled::text as tgenabled, t.tgtype::int as tgtype, p.prosrc ~* 'raise\\s+exception' as raises
    from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace join pg_proc p on p.oid = t.tgfoid
    where n.nspname = ${log.schema} and c.relname = 'events' and not t.tgisinternal`.execute(db);
  // 'O' fires in the normal session mode, 'A' always; 'D' is disabled and 'R' fires for replication only.
  const guarding = triggers.filter((t) => (t.tgenabled === 'O' || t.tgenabled === 'A') && (t.tgtype & TRIGGER_BEFORE) !== 0 && t.raises);
  const unguarded = (Object.keys(TRIGGER_OPS) as Array<keyof typeof TRIGGER_OPS>).filter((op) => !guarding.some((t) => (t.tgtype & TRIGGER_OPS[op]) !== 0));

  const { rows: grants } = await sql<{ grantee: string; privilege: string }>`
    select case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end as grantee, a.privilege_type as privilege
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
    where n.nspname = ${log.schema} and c.relname = 'events' and a.grantee <> c.relowner
      and a.privilege_type in ('UPDATE', 'DELETE', 'TRUNCATE')
    order by 1, 2`.execute(db);

  const problems: string[] = [];
  if (unguarded.length) problems.push(`no enabled trigger refuses ${unguarded.join(', ')}`);
  if (grants.length) problems.push(`${[...new Set(grants.map((g) => g.grantee))].join(', ')} may ${[...new Set(grants.map((g) => g.privilege))].join(', ')}`);
  if (problems.length === 0) return { ...base, severity: 'pass', message: `${log.schema}.events refuses UPDATE, DELETE and TRUNCATE (trigger, and no role but its owner holds them)` };
  return {
    ...base,
    severity: 'fail',
    message: `${log.schema}.events is not immutable: ${problems.join('; ')}`,
    fix: `restart ${log.service} (its migration recreates the triggers and revokes UPDATE, DELETE, TRUNCATE from PUBLIC)${
      grants.some((g) => g.grantee !== 'PUBLIC') ? ` and REVOKE UPDATE, DELETE, TRUNCATE ON ${log.schema}.events FROM ${[...new Set(grants.map((g) => g.grantee).filter((g) => g !== 'PUBLIC'))].join(', ')}` : ''
    }; then check the audit chain`,
  };
}

/** Recomputes the hash chain of a schema's events (every chain in it); a broken link fails. */
export async function auditChain(db: Kysely<EventStoreDatabase>, log: ServiceLog): Promise<DoctorFinding> {
  const base = { check: 'audit-chain', service: log.service } as const;
  const verdict = await verifyEventChain(db, log.schema);
  if (verdict.ok) return { ...base, severity: 'pass', message: `${log.schema}.events: ${verdict.checked} ${verdict.checked === 1 ? 'event' : 'events'}, chain intact` };
  const b = verdict.broken;
  return {
    ...base,
    severity: 'fail',
    message: `${log.schema}.events was changed outside Coffer: ${verdict.reason} at global position ${b.globalPosition} (event ${b.eventId}, ${b.type}); ${verdict.checked} events before it verified`,
    fix: `treat it as an incident: find who wrote to ${log.schema}.events (Postgres logs, roles that bypass the trigger), restore the log from a backup taken before position ${b.globalPosition}; \`coffer audit verify --schema ${log.schema}\` re-checks it`,
  };
}

/** Whether auth's signing key was replaced within its rotation interval (plus slack for the minute-ly job and the 6-minute activation). */
export async function signingKeyAge(db: QueryExecutorProvider, schema: string, rotationSeconds: number, now: Date): Promise<DoctorFinding> {
  const base = { check: 'signing-key-rotation', service: 'auth', setting: 'AUTH_SIGNING_KEY_ROTATION_SECONDS' } as const;
  const exists = await sql<{ t: string | null }>`select to_regclass(${`${schema}.signing_keys`})::text as t`.execute(db);
  if (!exists.rows[0]?.t) return { ...base, severity: 'skip', message: `no signing keys in schema ${schema}: auth has not run against this database` };
  const { rows } = await sql<{ newest: Date | null }>`
    select max(coalesce(activate_at, created_at)) as newest from ${sql.id(schema)}.signing_keys`.execute(db);
  const newest = rows[0]?.newest;
  if (!newest) return { ...base, severity: 'skip', message: 'auth holds no signing key yet' };
  const ageSeconds = Math.round((now.getTime() - newest.getTime()) / 1000);
  const slackSeconds = 15 * 60;
  if (ageSeconds <= rotationSeconds + slackSeconds) {
    return { ...base, severity: 'pass', message: `the newest signing key became active ${formatAge(ageSeconds)} ago (rotation every ${formatAge(rotationSeconds)})` };
  }
  return {
    ...base,
    severity: 'fail',
    message: `the newest signing key became active ${formatAge(ageSeconds)} ago, past the rotation interval of ${formatAge(rotationSeconds)}: auth is not rotating its keys`,
    fix: 'make sure auth runs (it rotates on schedule, checked every minute), or rotate now with RotateSigningKey (operator)',
  };
}

/** Whether the secrets service's primary KEK version is younger than its rotation period (plus one check interval). */
export async function kekAge(db: QueryExecutorProvider, schema: string, rotationDays: number, checkSeconds: number, now: Date): Promise<DoctorFinding> {
  const base = { check: 'kek-rotation', service: 'secrets', setting: 'SECRETS_KEK_ROTATION_DAYS' } as const;
  const exists = await sql<{ t: string | null }>`select to_regclass(${`${schema}.kek_versions`})::text as t`.execute(db);
  if (!exists.rows[0]?.t) return { ...base, severity: 'skip', message: `no KEK versions in schema ${schema}: secrets has not run against this database` };
  const { rows } = await sql<{ kek_id: string; version: number; observed_at: Date }>`
    select kek_id, version, observed_at from ${sql.id(schema)}.kek_versions where state = 'primary'
    order by observed_at desc, version desc limit 1`.execute(db);
  const primary = rows[0];
  if (!primary) return { ...base, severity: 'skip', message: 'secrets has recorded no primary KEK version yet' };
  const ageSeconds = Math.round((now.getTime() - primary.observed_at.getTime()) / 1000);
  const limitSeconds = rotationDays * 86400 + checkSeconds + 15 * 60;
  if (ageSeconds <= limitSeconds) {
    return { ...base, severity: 'pass', message: `KEK ${primary.kek_id} v${primary.version} is primary since ${formatAge(ageSeconds)} (rotation every ${rotationDays} days)` };
  }
  return {
    ...base,
    severity: 'fail',
    message: `KEK ${primary.kek_id} v${primary.version} is primary since ${formatAge(ageSeconds)}, past the rotation period of ${rotationDays} days: data keys are wrapped by an overdue key`,
    fix: 'make sure secrets runs (it rotates when due, checked every SECRETS_KEK_ROTATION_CHECK_SECONDS), or rotate now: `node --import tsx apps/secrets/src/rotate-kek.ts` with the secrets service\'s settings',
  };
}

function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}
