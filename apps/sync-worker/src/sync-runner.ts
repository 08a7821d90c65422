import { context, metrics, SpanKind, trace, type Histogram } from '@opentelemetry/api';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import { CofferError, isCofferError, type IntegrationEventMessage, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import { recordInbox, type AppendedEvent, type AppendOptions, type EventStore, type NewEvent, type OutboxMessage } from '@coffer/event-store';
import { integrationEventMessage, type CloudEvent } from '@coffer/messaging';
import { secretValues } from '@coffer/secret-json';
import { contextOfTraceparent, type Logger, type Redactor } from '@coffer/telemetry';
import { RECORDS_CATALOG, stateKey, type StateMessage, type SyncMessage } from './connectors/airbyte-protocol';
import { AccessTokenRejectedError, ConnectorError, parseObject, type SyncRecord } from './connectors/connector';
import type { ConnectorRegistry } from './connectors/registry';
import { CHECK_REQUESTED_CONSUMER, type CheckRunner } from './check-runner';
import { backoffMs, decide, evolve, initialState, type CheckJobResult, type FailureCode, type SyncJobCommand, type SyncJobEvent, type SyncJobState } from './domain/sync-job.decider';
import { CredentialNeedsReauthorizationError, CredentialRefreshError, type OAuthCredentials } from './oauth/oauth-credentials';
import type { OAuthDeclaration } from './oauth/token-endpoint';
import {
  claimDueJob,
  committedStates,
  heartbeat,
  holdsJob,
  projectJobAttemptFailed,
  projectJobCancelled,
  projectJobFailed,
  projectJobRequested,
  projectJobStarted,
  projectJobSucceeded,
  projectStreamStateCommitted,
  staleJobs,
  stateVersion,
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
  /** The same for an attempt of a check or discover job (a caller is waiting for it); 30 s when omitted. */
  checkTimeoutMs?: number;
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
  /** Runs the attempts of check and discover jobs; without it such a job fails. */
  checks?: CheckRunner;
  /** OAuth refresh for actors whose definition declares OAuth; without it such a sync fails. */
  credentials?: OAuthCredentials;
  /** Waits between attempts to record how a job ended (default 1 s, 5 s, 15 s); the outcome is known, so it is worth retrying. */
  endRetryDelaysMs?: number[];
  /** Run at each scheduler pass: removes what connector runs of a killed worker left behind (their config files). */
  sweep?: () => Promise<unknown>;
}

/** Default job settings. */
export const defaultJobSettings: JobSettings = {
  maxAttempts: 3,
  backoffBaseMs: 5_000,
  backoffMaxMs: 300_000,
  timeoutMs: 3_600_000,
  checkTimeoutMs: 30_000,
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

type RunResult = { recordsSynced: number; recordsPerStream?: Record<string, number> } | { result: CheckJobResult } | { code: FailureCode; reason: string };

/**
 * Sync, check and discover jobs as an event-sourced lifecycle: SyncRequested (or CheckRequested) queues a job (once); each replica's
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
    if (event.type === 'SyncJobRequested' ? event.data.kind && event.data.kind !== 'sync' : state.kind !== 'sync') return checkOptionsFor(event, state, traceparent);
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
          outbox: outbox((r) => [
            message('SyncSucceeded', r, jobId, { jobId, connectionId, recordsSynced: event.data.recordsSynced, recordsPerStream: { ...event.data.recordsPerStream }, occurredAt: event.data.endedAt }, traceparent),
          ]),
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

  /**
   * The append of one event of a check or discover job: the same read model (with its kind), and for
   * the caller waiting at config one CheckCompleted when the job ends, whichever way it ends (the
   * connector's answer, a failure for good, a cancel). A failure for good is dead-lettered like a sync's.
   */
  function checkOptionsFor(event: SyncJobEvent, state: SyncJobState, traceparent?: string): AppendOptions {
    const jobId = state.jobId!;
    const kind = event.type === 'SyncJobRequested' ? event.data.kind! : state.kind;
    const completed = (r: AppendedEvent, result: CheckJobResult, occurredAt: string) =>
      message('CheckCompleted', r, jobId, { jobId, kind, succeeded: result.succeeded, message: result.message, catalogJson: result.catalogJson, occurredAt }, traceparent);
    switch (event.type) {
      case 'SyncJobRequested':
        return { project: (t) => projectJobRequested(t, schema, event.data) };
      case 'SyncJobStarted':
        return { project: (t) => projectJobStarted(t, schema, event.data) };
      case 'SyncJobAttemptFailed':
        return { project: (t) => projectJobAttemptFailed(t, schema, event.data) };
      case 'SyncJobSucceeded':
        return { project: (t) => projectJobSucceeded(t, schema, event.data), outbox: outbox((r) => [completed(r, event.data.result!, event.data.endedAt)]) };
      case 'SyncJobFailed': {
        const d = event.data;
        const exhausted = d.attempt >= state.maxAttempts;
        return {
          project: (t) => projectJobFailed(t, schema, d),
          outbox: outbox((r) => [
            completed(r, { succeeded: false, message: `the ${kind} job failed (${d.code}): ${d.reason}`, catalogJson: '' }, d.endedAt),
            ...(exhausted ? [message('SyncJobDeadLettered', { ...r, eventId: deadLetterId(r.eventId) }, jobId, { jobId, connectionId: '', attempts: d.attempt, reasonCode: d.code, occurredAt: d.endedAt }, traceparent)] : []),
          ]),
        };
      }
      case 'SyncJobCancelled':
        return {
          project: (t) => projectJobCancelled(t, schema, event.data),
          outbox: outbox((r) => [completed(r, { succeeded: false, message: `the ${kind} job was cancelled`, catalogJson: '' }, event.data.endedAt)]),
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

  /**
   * Keeps a stream's state once the destination has committed the records before it, as the
   * StreamStateCommitted event of the connection's state stream (projected into stream_states), and
   * only while this worker still runs this attempt of the job. A state holding a hydrated value is
   * refused: it would put a secret in the event log.
   */
  async function commitState(jobId: string, attempt: number, connectionId: string, state: StateMessage): Promise<void> {
    const text = JSON.stringify(state);
    if (redactor.redact(text) !== text) throw new ConnectorError('a STATE message holds a secret value of the config; it is not kept');
    const { namespace, stream } = stateKey(state);
    const data = { connectionId, jobId, attempt, namespace, stream, state, committedAt: clock().toISOString() };
    await db.transaction().execute(async (trx) => {
      if (!(await holdsJob(trx, schema, jobId, workerId, attempt))) throw new ConnectorError('the job was cancelled or failed over while it ran; its state is not kept');
      const version = await stateVersion(trx, schema, connectionId);
      await store.appendInTransaction(trx, `connection-state-${connectionId}`, version, [{ type: 'StreamStateCommitted', data: { ...data }, metadata: { actor: 'sync-worker', correlationId: jobId } }], {
        project: (t) => projectStreamStateCommitted(t, schema, data, version + 1),
      });
    });
  }

  /** Runs source → destination once with hydrated configs (every secret value registered with the redactor first). */
  async function runOnce(jobId: string, attempt: number, plan: SyncPlan, signal: AbortSignal, rejectedAccess?: string): Promise<RunResult & { accessCoordinate?: string }> {
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
      // The catalog decides each stream's mode; incremental streams resume after their last committed state.
      const catalog = source.configure ? await source.configure(hydrated[0]!, signal) : RECORDS_CATALOG;
      const states = (await committedStates(db, schema, plan.connectionId)) as StateMessage[];
      const messages = source.readMessages ? source.readMessages(hydrated[0]!, catalog, states, signal) : asRecordMessages(source.read(hydrated[0]!, signal));
      const committed = (state: StateMessage) => commitState(jobId, attempt, plan.connectionId, state);
      const perStream = new Map<string, number>();
      const counted = countRecords(messages, perStream);
      const recordsSynced = destination.writeMessages
        ? await destination.writeMessages(hydrated[1]!, catalog, counted, committed, signal)
        : await destination.write(hydrated[1]!, recordsOf(counted), signal);
      return { recordsSynced, recordsPerStream: Object.fromEntries(perStream) };
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
  async function run(jobId: string, attempt: number, connectionId: string, signal: AbortSignal): Promise<RunResult> {
    let plan: SyncPlan;
    try {
      plan = await ports.getSyncPlan(connectionId);
    } catch (err) {
      return { code: 'internal', reason: isCofferError(err) ? `${err.code}: ${err.message}` : 'the sync plan could not be read' };
    }
    const first = await runOnce(jobId, attempt, plan, signal);
    if ('accessCoordinate' in first && first.accessCoordinate && 'code' in first) {
      logger.info({ jobId }, 'the provider rejected the access token; refreshing and running again');
      return runOnce(jobId, attempt, plan, signal, first.accessCoordinate);
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
    const kind = started.state.kind;
    const timeout = setTimeout(() => controller.abort('timeout'), kind === 'sync' ? jobs.timeoutMs : (jobs.checkTimeoutMs ?? 30_000));
    const beat = setInterval(() => {
      heartbeat(db, schema, jobId, workerId)
        .then((mine) => {
          if (!mine) controller.abort('lost');
        })
        .catch((err: unknown) => logger.warn({ err, jobId }, 'heartbeat failed'));
    }, jobs.heartbeatIntervalMs);
    try {
      const runStarted = performance.now();
      const result = kind === 'sync' ? await run(jobId, started.state.attempts, started.state.connectionId!, controller.signal) : await runCheck(started.state, controller.signal);
      const outcome = !('code' in result) ? 'succeeded' : controller.signal.aborted ? String(controller.signal.reason) : 'failed';
      if (kind === 'sync') syncMetrics().duration.record((performance.now() - runStarted) / 1000, { outcome });
      if (controller.signal.aborted && controller.signal.reason === 'lost') {
        logger.warn({ jobId }, 'the job was cancelled or failed over while it ran; its outcome is not recorded');
        return;
      }
      const now = clock();
      const command: SyncJobCommand =
        'result' in result
          ? { type: 'CompleteSyncJob', recordsSynced: 0, result: result.result, now: now.toISOString() }
          : 'recordsSynced' in result && Number.isSafeInteger(result.recordsSynced) && result.recordsSynced >= 0
            ? { type: 'CompleteSyncJob', recordsSynced: result.recordsSynced, recordsPerStream: result.recordsPerStream, now: now.toISOString() }
            : {
              type: 'FailSyncJobAttempt',
              code: 'code' in result ? result.code : 'internal',
              reason: 'reason' in result ? result.reason : 'the destination reported an invalid record count',
              retryAt: new Date(now.getTime() + backoffMs(started.state.attempts, jobs.backoffBaseMs, jobs.backoffMaxMs)).toISOString(),
              now: now.toISOString(),
            };
      const event = await apply(jobId, command, started);
      if (event) logger.info({ jobId, kind, outcome: event.type, attempt: started.state.attempts, ...('code' in event.data && { code: event.data.code, reason: event.data.reason }) }, `${kind} attempt ended`);
    } finally {
      clearTimeout(timeout);
      clearInterval(beat);
      running.delete(jobId);
    }
  }

  /** One attempt of a check or discover job. */
  async function runCheck(state: SyncJobState, signal: AbortSignal): Promise<RunResult> {
    if (!deps.checks || !state.check) return { code: 'internal', reason: `this worker does not run ${state.kind} jobs` };
    return deps.checks.run({ jobId: state.jobId!, kind: state.kind as 'check' | 'discover', workspaceId: state.workspaceId!, ...state.check }, signal);
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
    logger.info({ jobId: started.jobId, kind: started.loaded.state.kind, attempt: started.loaded.state.attempts, workerId }, `${started.loaded.state.kind} started`);
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
      await deps.sweep?.();
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

  /**
   * Handles one CheckRequested event: queues a check or discover job once, run by the scheduler like a
   * sync (attempts, back-off, timeout); its end is published as CheckCompleted.
   */
  async function handleCheckRequested(event: CloudEvent): Promise<void> {
    const request = event.data as IntegrationEventMessage<'CheckRequested'>;
    const { jobId, workspaceId, kind } = request;
    // Fails every delivery, so a malformed request ends on the dead-letter subject.
    if (kind !== 'check' && kind !== 'discover') throw new CofferError('invalid_argument', `unknown check kind ${String(kind)}`);
    if (![jobId, workspaceId].every((id) => typeof id === 'string' && UUID.test(id))) throw new CofferError('invalid_argument', 'CheckRequested needs uuid job_id and workspace_id');
    const command: SyncJobCommand = {
      type: 'RequestSyncJob',
      jobId,
      connectionId: '',
      workspaceId,
      kind,
      check: { connector: request.connector, partialConfigJson: request.partialConfigJson },
      maxAttempts: jobs.maxAttempts,
      now: clock().toISOString(),
    };
    const [requested] = decide(command, initialState());
    const state = evolve(initialState(), requested!);
    try {
      await db.transaction().execute(async (trx) => {
        if (!(await recordInbox(trx, schema, CHECK_REQUESTED_CONSUMER, event.id))) return;
        await store.appendInTransaction(trx, streamOf(jobId), 0, asNew([requested!], jobId, { causationId: event.id, traceparent: event.traceparent }), optionsFor(requested!, state, event.traceparent));
      });
    } catch (err) {
      if (isCofferError(err) && err.code === 'version_conflict') {
        logger.warn({ jobId, eventId: event.id }, `${kind} job already requested by another CheckRequested event`);
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
    // Refused by the decider when the job has ended: FAILED_PRECONDITION naming its status.
    const event = await apply(jobId, { type: 'CancelSyncJob', by, now: clock().toISOString() }, loaded);
    if (!event) throw new CofferError('version_conflict', 'the job changed meanwhile; read it again');
    running.get(jobId)?.abort('lost');
  }

  return {
    handleSyncRequested,
    handleCheckRequested,
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

/** Passes the messages on, counting the records of each stream (`namespace.name`, or the name alone). */
async function* countRecords(messages: AsyncIterable<SyncMessage>, counts: Map<string, number>): AsyncGenerator<SyncMessage> {
  for await (const m of messages) {
    if (m.type === 'RECORD') {
      const key = m.record.namespace ? `${m.record.namespace}.${m.record.stream}` : m.record.stream;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    yield m;
  }
}

/** A records-only source's records, as the one stream `records`. */
async function* asRecordMessages(records: AsyncIterable<SyncRecord>): AsyncGenerator<SyncMessage> {
  for await (const data of records) yield { type: 'RECORD', record: { stream: 'records', data, emitted_at: Date.now() } };
}

/** The records of a message stream, for a destination that takes records only (its states are then never committed). */
async function* recordsOf(messages: AsyncIterable<SyncMessage>): AsyncGenerator<SyncRecord> {
  for await (const m of messages) if (m.type === 'RECORD') yield m.record.data;
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
