import { context, metrics, SpanKind, trace, type Histogram } from '@opentelemetry/api';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import { CofferError, isCofferError, type IntegrationEventMessage, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import { recordInbox, type AppendedEvent, type AppendOptions, type EventStore, type NewEvent, type OutboxMessage } from '@coffer/event-store';
import { integrationEventMessage, type CloudEvent } from '@coffer/messaging';
import { secretValues } from '@coffer/secret-json';
import { contextOfTraceparent, type Logger, type Redactor } from '@coffer/telemetry';
import { AccessTokenRejectedError, ConnectorError, parseObject } from './connectors/connector';
import type { ConnectorRegistry } from './connectors/registry';
import { backoffMs, decide, evolve, initialState, type FailureCode, type SyncJobCommand, type SyncJobEvent, type SyncJobState } from './domain/sync-job.decider';
import { CredentialNeedsReauthorizationError, CredentialRefreshError, type OAuthCredentials } from './oauth/oauth-credentials';
import type { OAuthDeclaration } from './oauth/token-endpoint';
import {
  claimDueJob,
  heartbeat,
  projectJobAttemptFailed,
  projectJobCancelled,
  projectJobFailed,
  projectJobRequested,
  projectJobStarted,
  projectJobSucceeded,
  staleJobs,
} from './sync.postgres';
import type { SyncDatabase } from './sync.database';

/** The sync plan config gives for a connection: partial configs only. */
export interface SyncPlan {
  connectionId: string;
  workspaceId: string;
  source?: { actorId: string; connector: string; partialConfigJson: string; oauthJson?: string };
  destination?: { actorId: string; connector: string; partialConfigJson: string; oauthJson?: string };
}

/** What the runner needs from config and secrets. */
export interface SyncPorts {
  getSyncPlan(connectionId: string): Promise<SyncPlan>;
  /** Hydrates the partial config of `ownerId` (the actor it belongs to); another owner's coordinate is refused. */
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
}

/** How jobs are scheduled, retried and watched. */
export interface JobSettings {
  /** Attempts of a job before it fails for good and is dead-lettered. */
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** An attempt running longer is aborted and counts as failed (`timeout`). */
  timeoutMs: number;
  heartbeatIntervalMs: number;
  /** A running job whose worker has not heartbeated this long is retried by another replica. */
  heartbeatTimeoutMs: number;
  pollIntervalMs: number;
  /** Jobs this replica runs at once. */
  concurrency: number;
}

/** What the sync runner is composed from; config and secrets are reached through `ports`. */
export interface SyncRunnerDeps {
  db: Kysely<SyncDatabase>;
  store: EventStore<SyncDatabase>;
  schema: string;
  namespace: MessagingNamespace;
  ports: SyncPorts;
  connectors: ConnectorRegistry;
  redactor: Redactor;
  logger: Logger;
  clock: () => Date;
  /** This replica's id, recorded with each attempt it starts. */
  workerId: string;
  jobs: JobSettings;
  /** OAuth refresh for actors whose definition declares OAuth; without it such a sync fails. */
  credentials?: OAuthCredentials;
  /** Waits between attempts to record how a job ended (default 1 s, 5 s, 15 s); the outcome is known, so it is worth retrying. */
  endRetryDelaysMs?: number[];
}

/** Default job settings. */
export const defaultJobSettings: JobSettings = {
  maxAttempts: 3,
  backoffBaseMs: 5_000,
  backoffMaxMs: 300_000,
  timeoutMs: 3_600_000,
  heartbeatIntervalMs: 5_000,
  heartbeatTimeoutMs: 30_000,
  pollIntervalMs: 1_000,
  concurrency: 4,
};

/** The inbox name of the SyncRequested consumer. */
export const SYNC_REQUESTED_CONSUMER = 'sync-worker-sync-requested';
const SOURCE = 'coffer/sync-worker';
const streamOf = (jobId: string) => `sync-job-${jobId}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type RunResult = { recordsSynced: number } | { code: FailureCode; reason: string };

/**
 * Sync jobs as an event-sourced lifecycle: SyncRequested queues a job (once); each replica's
 * scheduler claims due jobs (one running job per connection), runs them with a heartbeat and a
 * timeout, and records the outcome: success, a retry after an exponential back-off, or a failure
 * for good (dead-lettered when the attempts ran out). A job whose worker stops heartbeating is
 * failed over to a retry by whichever replica notices first.
 */
export function createSyncRunner(deps: SyncRunnerDeps) {
  const { db, store, schema, namespace: ns, ports, connectors, redactor, logger, clock, workerId, jobs, credentials } = deps;
  const endRetryDelaysMs = deps.endRetryDelaysMs ?? [1_000, 5_000, 15_000];
  const running = new Map<string, AbortController>();
  const finished = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;
  let ticking: Promise<void> | undefined;
  let again = false;

  const outbox =
    (messages: (r: AppendedEvent) => OutboxMessage[]) =>
    (recorded: AppendedEvent[]): OutboxMessage[] =>
      recorded.flatMap(messages);
  const message = <N extends IntegrationEventName>(name: N, r: AppendedEvent, jobId: string, body: IntegrationEventMessage<N>, traceparent?: string) =>
    integrationEventMessage(ns, name, body, { eventId: r.eventId, source: SOURCE, subject: jobId, time: r.recordedAt, traceparent });
  const asNew = (events: SyncJobEvent[], jobId: string, metadata: Record<string, unknown> = {}): NewEvent[] =>
    events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: { actor: 'sync-worker', correlationId: jobId, ...metadata } }));

  async function load(jobId: string): Promise<{ state: SyncJobState; version: number; traceparent?: string }> {
    const { currentVersion, events } = await store.readStream(streamOf(jobId));
    const state = (events as unknown as SyncJobEvent[]).reduce(evolve, initialState());
    return { state, version: currentVersion, traceparent: events[0]?.metadata.traceparent as string | undefined };
  }

  /** The append of one decided event with its projection and integration events. */
  function optionsFor(event: SyncJobEvent, state: SyncJobState, traceparent?: string): AppendOptions<SyncDatabase> {
    const jobId = state.jobId!;
    const connectionId = state.connectionId!;
    switch (event.type) {
      case 'SyncJobRequested':
        return { project: (t) => projectJobRequested(t, schema, event.data) };
      case 'SyncJobStarted':
        return {
          project: (t) => projectJobStarted(t, schema, event.data),
          outbox: outbox((r) => [message('SyncStarted', r, jobId, { jobId, connectionId, attempt: event.data.attempt, occurredAt: event.data.startedAt }, traceparent)]),
        };
      case 'SyncJobSucceeded':
        return {
          project: (t) => projectJobSucceeded(t, schema, event.data),
          outbox: outbox((r) => [message('SyncSucceeded', r, jobId, { jobId, connectionId, recordsSynced: event.data.recordsSynced, occurredAt: event.data.endedAt }, traceparent)]),
        };
      case 'SyncJobAttemptFailed': {
        const d = event.data;
        return {
          project: (t) => projectJobAttemptFailed(t, schema, d),
          outbox: outbox((r) => [message('SyncFailed', r, jobId, { jobId, connectionId, reason: d.reason, reasonCode: d.code, attempt: d.attempt, willRetry: true, retryAt: d.retryAt, occurredAt: d.failedAt }, traceparent)]),
        };
      }
      case 'SyncJobFailed': {
        const d = event.data;
        const exhausted = d.attempt >= state.maxAttempts;
        return {
          project: (t) => projectJobFailed(t, schema, d),
          outbox: outbox((r) => [
            message('SyncFailed', r, jobId, { jobId, connectionId, reason: d.reason, reasonCode: d.code, attempt: d.attempt, willRetry: false, retryAt: '', occurredAt: d.endedAt }, traceparent),
            ...(exhausted ? [message('SyncJobDeadLettered', { ...r, eventId: deadLetterId(r.eventId) }, jobId, { jobId, connectionId, attempts: d.attempt, reasonCode: d.code, occurredAt: d.endedAt }, traceparent)] : []),
          ]),
        };
      }
      case 'SyncJobCancelled':
        return {
          project: (t) => projectJobCancelled(t, schema, event.data),
          outbox: outbox((r) => [message('SyncCancelled', r, jobId, { jobId, connectionId, cancelledBy: event.data.cancelledBy, occurredAt: event.data.endedAt }, traceparent)]),
        };
    }
  }

  /** Decides `command` on the stored job and appends the result; a version conflict means another replica or an operator got there first. */
  async function apply(jobId: string, command: SyncJobCommand, expected?: { state: SyncJobState; version: number; traceparent?: string }): Promise<SyncJobEvent | undefined> {
    const { state, version, traceparent } = expected ?? (await load(jobId));
    const [event] = decide(command, state);
    for (let attempt = 0; ; attempt++) {
      try {
        await store.append(streamOf(jobId), version, asNew([event!], jobId, { traceparent }), optionsFor(event!, state, traceparent));
        return event;
      } catch (err) {
        if (isCofferError(err) && err.code === 'version_conflict') {
          logger.warn({ jobId, command: command.type }, 'sync job changed meanwhile (cancelled, failed over); keeping that');
          return undefined;
        }
        const delay = endRetryDelaysMs[attempt];
        if (delay === undefined) throw err;
        logger.warn({ err, jobId, attempt: attempt + 1 }, 'could not record the sync job event; retrying');
        await sleep(delay);
      }
    }
  }

  /** Runs source → destination once with hydrated configs (every secret value registered with the redactor first). */
  async function runOnce(jobId: string, plan: SyncPlan, signal: AbortSignal, rejectedAccess?: string): Promise<RunResult & { accessCoordinate?: string }> {
    const registered: string[] = [];
    let accessCoordinate: string | undefined;
    try {
      if (!plan.source || !plan.destination) throw new ConnectorError('the sync plan has no source or no destination');
      const source = connectors.sources[plan.source.connector];
      const destination = connectors.destinations[plan.destination.connector];
      if (!source) throw new ConnectorError(`unknown source connector ${plan.source.connector}`);
      if (!destination) throw new ConnectorError(`unknown destination connector ${plan.destination.connector}`);
      const hydrated: Record<string, unknown>[] = [];
      for (const [name, side] of [['source', plan.source], ['destination', plan.destination]] as const) {
        let partial = parseObject(side.partialConfigJson, `the ${name} partial config`);
        let config: Record<string, unknown>;
        if (side.oauthJson) {
          if (!credentials) throw new ConnectorError(`the ${name} uses OAuth, which this worker is not set up for`);
          const oauth = parseObject(side.oauthJson, `the ${name} OAuth declaration`) as unknown as OAuthDeclaration;
          const prepared = await credentials.prepare({ actorId: side.actorId, workspaceId: plan.workspaceId, partial, oauth }, `sync ${jobId}`, signal, name === 'source' ? rejectedAccess : undefined);
          partial = prepared.partial;
          config = prepared.config;
          if (name === 'source') accessCoordinate = prepared.accessCoordinate;
        } else {
          config = parseObject(await ports.hydrate(plan.workspaceId, side.partialConfigJson, `sync ${jobId}`, side.actorId), `the hydrated ${name} config`);
        }
        for (const v of secretValues(partial, config)) {
          redactor.register(v);
          registered.push(v);
        }
        hydrated.push(config);
      }
      return { recordsSynced: await destination.write(hydrated[1]!, source.read(hydrated[0]!, signal), signal) };
    } catch (err) {
      if (signal.aborted && signal.reason === 'timeout') return { code: 'timeout', reason: 'the attempt ran out of time' };
      if (err instanceof AccessTokenRejectedError && accessCoordinate) return { code: 'connector_error', reason: redactor.redact(err.message), accessCoordinate };
      if (err instanceof AccessTokenRejectedError) return { code: 'credential_rejected', reason: redactor.redact(err.message) };
      if (err instanceof CredentialNeedsReauthorizationError) return { code: 'credential_needs_reauthorization', reason: err.message };
      if (err instanceof CredentialRefreshError) return { code: 'credential_refresh_failed', reason: redactor.redact(err.message) };
      if (err instanceof ConnectorError) return { code: 'connector_error', reason: redactor.redact(err.message) };
      if (isCofferError(err)) return { code: 'internal', reason: redactor.redact(`${err.code}: ${err.message}`) };
      // The logger redacts with the values still registered; the caller gets nothing of the message.
      logger.error({ err, jobId }, 'sync failed unexpectedly');
      return { code: 'internal', reason: 'internal error (see the sync worker log)' };
    } finally {
      // The plaintext configs go out of scope here; the redactor forgets them once this run ends.
      for (const v of registered) redactor.unregister(v);
    }
  }

  /** One attempt: plan, run, and when the provider rejected the OAuth access token, refresh it and run once more. */
  async function run(jobId: string, connectionId: string, signal: AbortSignal): Promise<RunResult> {
    let plan: SyncPlan;
    try {
      plan = await ports.getSyncPlan(connectionId);
    } catch (err) {
      return { code: 'internal', reason: isCofferError(err) ? `${err.code}: ${err.message}` : 'the sync plan could not be read' };
    }
    const first = await runOnce(jobId, plan, signal);
    if ('accessCoordinate' in first && first.accessCoordinate && 'code' in first) {
      logger.info({ jobId }, 'the provider rejected the access token; refreshing and running again');
      return runOnce(jobId, plan, signal, first.accessCoordinate);
    }
    return first;
  }

  /** Runs a job this replica has just started, with its heartbeat and timeout, and records the outcome. */
  async function execute(jobId: string, started: { state: SyncJobState; version: number; traceparent?: string }): Promise<void> {
    // The attempt continues the trace of the RequestSync that queued the job (its SyncRequested's
    // context, kept with the job): the calls to config, secrets and the destination are its children.
    // A job queued outside any trace runs without a span.
    if (!started.traceparent) return executeAttempt(jobId, started);
    const parent = contextOfTraceparent(started.traceparent);
    const span = trace.getTracer('@coffer/sync-worker').startSpan('sync attempt', { kind: SpanKind.INTERNAL, attributes: { 'coffer.sync.job_id': jobId, 'coffer.sync.attempt': started.state.attempts } }, parent);
    try {
      return await context.with(trace.setSpan(parent, span), () => executeAttempt(jobId, started));
    } finally {
      span.end();
    }
  }

  async function executeAttempt(jobId: string, started: { state: SyncJobState; version: number; traceparent?: string }): Promise<void> {
    const controller = new AbortController();
    running.set(jobId, controller);
    const timeout = setTimeout(() => controller.abort('timeout'), jobs.timeoutMs);
    const beat = setInterval(() => {
      heartbeat(db, schema, jobId, workerId)
        .then((mine) => {
          if (!mine) controller.abort('lost');
        })
        .catch((err: unknown) => logger.warn({ err, jobId }, 'heartbeat failed'));
    }, jobs.heartbeatIntervalMs);
    try {
      const runStarted = performance.now();
      const result = await run(jobId, started.state.connectionId!, controller.signal);
      const outcome = 'recordsSynced' in result ? 'succeeded' : controller.signal.aborted ? String(controller.signal.reason) : 'failed';
      syncMetrics().duration.record((performance.now() - runStarted) / 1000, { outcome });
      if (controller.signal.aborted && controller.signal.reason === 'lost') {
        logger.warn({ jobId }, 'the job was cancelled or failed over while it ran; its outcome is not recorded');
        return;
      }
      const now = clock();
      const command: SyncJobCommand =
        'recordsSynced' in result && Number.isSafeInteger(result.recordsSynced) && result.recordsSynced >= 0
          ? { type: 'CompleteSyncJob', recordsSynced: result.recordsSynced, now: now.toISOString() }
          : {
              type: 'FailSyncJobAttempt',
              code: 'code' in result ? result.code : 'internal',
              reason: 'reason' in result ? result.reason : 'the destination reported an invalid record count',
              retryAt: new Date(now.getTime() + backoffMs(started.state.attempts, jobs.backoffBaseMs, jobs.backoffMaxMs)).toISOString(),
              now: now.toISOString(),
            };
      const event = await apply(jobId, command, started);
      if (event) logger.info({ jobId, outcome: event.type, attempt: started.state.attempts, ...('code' in event.data && { code: event.data.code, reason: event.data.reason }) }, 'sync attempt ended');
    } finally {
      clearTimeout(timeout);
      clearInterval(beat);
      running.delete(jobId);
    }
  }

  /** Fails over running jobs whose worker stopped heartbeating. */
  async function reap(): Promise<void> {
    for (const stale of await staleJobs(db, schema, jobs.heartbeatTimeoutMs)) {
      const loaded = await load(stale.job_id);
      if (loaded.state.status !== 'running') continue;
      const now = clock();
      logger.warn({ jobId: stale.job_id, lostWorker: stale.worker_id }, 'sync job lost its worker (no heartbeat); failing the attempt over');
      await apply(
        stale.job_id,
        { type: 'FailSyncJobAttempt', code: 'worker_lost', reason: 'the worker running the attempt stopped heartbeating', retryAt: new Date(now.getTime() + backoffMs(loaded.state.attempts, jobs.backoffBaseMs, jobs.backoffMaxMs)).toISOString(), now: now.toISOString() },
        loaded,
      );
    }
  }

  /** Claims and starts one due job; false when there is none this replica may take. */
  async function claimOne(): Promise<boolean> {
    let started: { jobId: string; loaded: { state: SyncJobState; version: number; traceparent?: string } } | undefined;
    try {
      started = await db.transaction().execute(async (trx) => {
        const due = await claimDueJob(trx, schema);
        if (!due) return undefined;
        const loaded = await load(due.job_id);
        if (loaded.state.status !== 'queued') return undefined;
        const [event] = decide({ type: 'StartSyncJob', workerId, now: clock().toISOString() }, loaded.state);
        await store.appendInTransaction(trx, streamOf(due.job_id), loaded.version, asNew([event!], due.job_id, { traceparent: loaded.traceparent }), optionsFor(event!, loaded.state, loaded.traceparent));
        return { jobId: due.job_id, loaded: { state: evolve(loaded.state, event!), version: loaded.version + 1, traceparent: loaded.traceparent } };
      });
    } catch (err) {
      if (isCofferError(err) && err.code === 'version_conflict') return true;
      throw err;
    }
    if (!started) return false;
    logger.info({ jobId: started.jobId, attempt: started.loaded.state.attempts, workerId }, 'sync started');
    const done = execute(started.jobId, started.loaded).catch((err: unknown) => logger.error({ err, jobId: started.jobId }, 'sync attempt could not be recorded'));
    finished.add(done);
    void done.finally(() => {
      finished.delete(done);
      kick();
    });
    return true;
  }

  async function tick(): Promise<void> {
    try {
      await reap();
      while (!stopped && running.size < jobs.concurrency && (await claimOne()));
    } catch (err) {
      logger.warn({ err }, 'sync scheduler pass failed; trying again');
    }
  }

  /** Runs a scheduler pass now (or right after the one in progress). */
  function kick(): void {
    if (stopped) return;
    if (ticking) {
      again = true;
      return;
    }
    ticking = tick().finally(() => {
      ticking = undefined;
      if (again) {
        again = false;
        kick();
      }
    });
  }

  /** Handles one SyncRequested event: queues the job once (a redelivery or a re-published request does nothing). */
  async function handleSyncRequested(event: CloudEvent): Promise<void> {
    const request = event.data as IntegrationEventMessage<'SyncRequested'>;
    const { jobId, connectionId, workspaceId } = request;
    // Fails every delivery, so a malformed request ends on the dead-letter subject.
    if (![jobId, connectionId, workspaceId].every((id) => typeof id === 'string' && UUID.test(id))) {
      throw new CofferError('invalid_argument', 'SyncRequested needs uuid job_id, connection_id and workspace_id');
    }
    const [requested] = decide({ type: 'RequestSyncJob', jobId, connectionId, workspaceId, maxAttempts: jobs.maxAttempts, now: clock().toISOString() }, initialState());
    const state = evolve(initialState(), requested!);
    try {
      const fresh = await db.transaction().execute(async (trx) => {
        if (!(await recordInbox(trx, schema, SYNC_REQUESTED_CONSUMER, event.id))) return false;
        await store.appendInTransaction(trx, streamOf(jobId), 0, asNew([requested!], jobId, { causationId: event.id, traceparent: event.traceparent }), optionsFor(requested!, state, event.traceparent));
        return true;
      });
      if (!fresh) logger.info({ jobId, eventId: event.id }, 'SyncRequested already handled');
    } catch (err) {
      if (isCofferError(err) && err.code === 'version_conflict') {
        logger.warn({ jobId, eventId: event.id }, 'sync job already requested by another SyncRequested event');
        return;
      }
      throw err;
    }
    kick();
  }

  /** Cancels a queued or running job; the replica running it stops at once (here) or at its next heartbeat. */
  async function cancel(jobId: string, by: string): Promise<void> {
    const loaded = await load(jobId);
    if (loaded.state.status === 'absent') throw new CofferError('not_found', 'no such sync job', [{ field: 'job_id', reason: 'not found' }]);
    const event = await apply(jobId, { type: 'CancelSyncJob', by, now: clock().toISOString() }, loaded);
    if (!event) throw new CofferError('version_conflict', 'the job changed meanwhile; read it again');
    running.get(jobId)?.abort('lost');
  }

  return {
    handleSyncRequested,
    cancel,
    /** Starts this replica's scheduler (polling, plus a pass after each request and each finished job). */
    start(): void {
      if (!stopped) return;
      stopped = false;
      timer = setInterval(kick, jobs.pollIntervalMs);
      kick();
    },
    /** Stops claiming jobs and waits for the attempts in flight to end and be recorded. */
    async stop(): Promise<void> {
      stopped = true;
      clearInterval(timer);
      await ticking;
      await Promise.all([...finished]);
    },
  };
}

/** A dead-letter message's id, derived from the failure event's id so a re-relay publishes it once. */
function deadLetterId(eventId: string): string {
  return `${eventId.slice(0, -12)}${'dead00000000'}`;
}

let instruments: { duration: Histogram } | undefined;
/** Created on first use: the meter provider is registered at start-up, after modules load. */
function syncMetrics(): { duration: Histogram } {
  return (instruments ??= {
    duration: metrics.getMeter('@coffer/sync-worker').createHistogram('coffer.sync.duration', {
      unit: 's',
      description: 'time a sync ran (config read, hydration, source and destination), by outcome; the count is the syncs by outcome',
      advice: { explicitBucketBoundaries: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200] },
    }),
  });
}

/** The sync runner, as composed by main.ts. */
export type SyncRunner = ReturnType<typeof createSyncRunner>;
