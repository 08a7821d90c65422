import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { parseEnv } from '@coffer/runtime';

const count = (fallback: number, min = 0, max = 1_000_000) => z.coerce.number().int().min(min).max(max).default(fallback);

/** Every knob of the chaos suite (CHAOS_* variables); the defaults are the full run. */
export const chaosSettingsSchema = z.object({
  /** Writes (create, update with new secret values, masked rename, delete) of the SIGKILL scenario. */
  CHAOS_WRITES: count(10_000, 10),
  /** Clients writing at the same time, each over its own actors. */
  CHAOS_CLIENTS: count(8, 1, 64),
  /** SIGKILLs during the SIGKILL scenario, each of a service picked at random, at a random write. */
  CHAOS_KILLS: count(16, 0, 500),
  /** How long NATS stays stopped. */
  CHAOS_NATS_OUTAGE_S: count(60, 1, 600),
  /** Writes per second while NATS is stopped (paced, so the outage is covered from start to end). */
  CHAOS_NATS_WRITE_RATE: count(20, 1, 1000),
  /** Writes of the Postgres scenario; the connections are terminated at evenly spread writes. */
  CHAOS_PG_WRITES: count(1_000, 10),
  CHAOS_PG_TERMINATIONS: count(3, 0, 50),
  /** A bound on the Postgres scenario: its writers stop here even if CHAOS_PG_WRITES is not reached. */
  CHAOS_PG_PHASE_MAX_S: count(120, 10, 3600),
  /** Concurrent updates of one actor (and writes of one secret base) per round. */
  CHAOS_CONCURRENT: count(32, 2, 256),
  CHAOS_CONCURRENT_ROUNDS: count(5, 1, 100),
  /** Syncs requested and checks run before every consumed message is delivered again. */
  CHAOS_SYNCS: count(20, 1, 500),
  CHAOS_CHECKS: count(10, 0, 500),
  /** The whole run's time budget: the wait for recovery loops shrinks to keep within it. */
  CHAOS_BUDGET_S: count(840, 60, 7200),
  /** The longest wait for recovery loops to finish (no backlog, no queued shredding, no orphan). */
  CHAOS_CONVERGE_S: count(90, 5, 1800),
  /** A bound on the SIGKILL scenario: its writers stop here even if CHAOS_WRITES is not reached (the kills spread over whichever bound ends it). */
  CHAOS_KILL_PHASE_MAX_S: count(360, 10, 7200),
  /** Seed of the kill schedule, the victims and the mix of writes; random (and printed) by default. */
  CHAOS_SEED: count(randomInt(1, 2 ** 31 - 1), 1, 2 ** 31 - 1),
  CHAOS_NATS_SERVER: z.string().min(1).default('/usr/sbin/nats-server'),
  /** Where the report (the table and its details, Markdown) is written; relative to the repository root. */
  CHAOS_REPORT: z.string().min(1).default('chaos-report.md'),
  /** 1: keep the database and the NATS store directory for a look afterwards. */
  CHAOS_KEEP: z.enum(['0', '1']).default('0'),
});

/** The parsed settings of a chaos run. */
export type ChaosSettings = z.infer<typeof chaosSettingsSchema>;

/** Parses the CHAOS_* variables once, naming every bad one. */
export function loadChaosSettings(env: NodeJS.ProcessEnv): ChaosSettings {
  return parseEnv(chaosSettingsSchema, env, 'chaos suite');
}
