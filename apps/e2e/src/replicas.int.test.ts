import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type RunningService, type Stack, type StackService } from '@coffer/cli';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';

// Two replicas of auth, secrets and config on one database and NATS: each background job runs on one
// replica at a time and about once per period across both, and goes on on the survivor when one dies.
const INTERVAL_S = 1;
const WINDOW_MS = 12_000;
const ns = uniqueNamespace();

interface Turn {
  job: string;
  at: number;
  replica: number;
}

/** The turns of background jobs a replica ran (the job loop's debug line, `result.ran: true`). */
function turnsOf(svc: RunningService, replica: number): Turn[] {
  const turns: Turn[] = [];
  for (const line of svc.output) {
    try {
      const l = JSON.parse(line) as { msg?: string; job?: string; time?: number | string; result?: { ran?: boolean } };
      if (l.msg === 'background job ran' && l.result?.ran === true && l.job) turns.push({ job: l.job, at: typeof l.time === 'number' ? l.time : Date.parse(String(l.time)), replica });
    } catch {
      // not a JSON line
    }
  }
  return turns;
}

describe('replicas that cooperate: background jobs under a lease across two replicas of each service', () => {
  let db: TestDatabase;
  let stack: Stack;
  const second = {} as Record<'auth' | 'secrets' | 'config', RunningService>;

  beforeAll(async () => {
    db = await createTestDatabase('coffer_replicas');
    const fast = {
      config: { CONFIG_SHRED_RETRY_SECONDS: String(INTERVAL_S) },
      secrets: { SECRETS_EXPIRY_SWEEP_SECONDS: String(INTERVAL_S), SECRETS_KEK_ROTATION_CHECK_SECONDS: String(INTERVAL_S) },
    } as Partial<Record<StackService, Record<string, string>>>;
    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns, logLevel: 'debug', serviceEnv: fast });
    for (const s of ['auth', 'secrets', 'config'] as const) second[s] = await stack.addReplica(s);
  }, 240_000);

  afterAll(async () => {
    await stack?.stop();
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('every job runs about once per period across both replicas, never twice within 90 % of it, and carries on when one replica dies', async () => {
    const from = Date.now();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const to = Date.now();
    const all = (s: 'auth' | 'secrets' | 'config') => [...turnsOf(stack.services[s], 1), ...turnsOf(second[s], 2)].filter((t) => t.at >= from && t.at <= to);
    const jobs = { config: ['orphan shredding', 'interrupted write recovery'], secrets: ['expiry sweep', 'KEK rotation'] } as const;
    const seconds = (to - from) / 1000;
    for (const [service, names] of Object.entries(jobs) as ['config' | 'secrets', readonly string[]][]) {
      for (const job of names) {
        const turns = all(service).filter((t) => t.job === job).sort((a, b) => a.at - b.at);
        // Both replicas' timers fire every period: without the lease there would be about 2 × seconds turns.
        expect(turns.length, `${service} ${job}: ${turns.length} turns in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(Math.ceil(seconds / (0.9 * INTERVAL_S)) + 1);
        expect(turns.length, `${service} ${job}`).toBeGreaterThanOrEqual(Math.floor(seconds / (2 * INTERVAL_S)));
        const gaps = turns.slice(1).map((t, i) => t.at - turns[i]!.at);
        expect(Math.min(...gaps), `${service} ${job}: closest turns`).toBeGreaterThanOrEqual(0.6 * INTERVAL_S * 1000);
      }
    }
    // auth's jobs have periods of minutes: in the window, one turn at most across both replicas.
    for (const job of ['signing-key-rotation', 'login-attempts-prune']) expect(all('auth').filter((t) => t.job === job).length, job).toBeLessThanOrEqual(1);
    console.log('turns per replica', Object.fromEntries((['config', 'secrets'] as const).map((s) => [s, { first: all(s).filter((t) => t.replica === 1).length, second: all(s).filter((t) => t.replica === 2).length }])));

    // The first secrets replica dies: its jobs go on on the second.
    await stack.kill('secrets', 'SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 6_000));
    const after = turnsOf(second.secrets, 2).filter((t) => t.at > killedAt);
    for (const job of jobs.secrets) expect(after.filter((t) => t.job === job).length, `${job} on the survivor`).toBeGreaterThanOrEqual(3);
  }, 120_000);
});
