import { metrics, type Histogram } from '@opentelemetry/api';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import { CofferError, isCofferError, type IntegrationEventMessage, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import { recordInbox, type AppendedEvent, type AppendOptions, type EventStore, type NewEvent, type OutboxMessage } from '@coffer/event-store';
import { integrationEventMessage, type CloudEvent } from '@coffer/messaging';
import { secretValues } from '@coffer/secret-json';
import type { Logger, Redactor } from '@coffer/telemetry';
import { ConnectorError, parseObject } from './connectors/connector';
import type { ConnectorRegistry } from './connectors/registry';
import {
  decide,
  evolve,
  initialState,
  type SyncJobEvent,
  type SyncJobStartedData,
} from './domain/sync-job.decider';
import { projectJobFailed, projectJobStarted, projectJobSucceeded } from './sync.postgres';

/** The sync plan config gives for a connection: partial configs only. */
export interface SyncPlan {
  connectionId: string;
  workspaceId: string;
  source?: { actorId: string; connector: string; partialConfigJson: string };
  destination?: { actorId: string; connector: string; partialConfigJson: string };
}

/** What the runner needs from config and secrets. */
export interface SyncPorts {
  getSyncPlan(connectionId: string): Promise<SyncPlan>;
  /** Hydrates the partial config of `ownerId` (the actor it belongs to); another owner's coordinate is refused. */
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
}

/** What the sync runner is composed from; config and secrets are reached through `ports`. */
export interface SyncRunnerDeps {
  db: Kysely<any>;
  store: EventStore;
  schema: string;
  namespace: MessagingNamespace;
  ports: SyncPorts;
  connectors: ConnectorRegistry;
  redactor: Redactor;
  logger: Logger;
  clock: () => Date;
  /** Waits between attempts to record how a job ended (default 1 s, 5 s, 15 s); the outcome is known, so it is worth retrying. */
  endRetryDelaysMs?: number[];
}

/** The inbox name of the SyncRequested consumer. */
export const SYNC_REQUESTED_CONSUMER = 'sync-worker-sync-requested';
const SOURCE = 'coffer/sync-worker';
const streamOf = (jobId: string) => `sync-job-${jobId}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The SyncRequested handler: start the job (once), run it, record how it ended. */
export function createSyncRunner(deps: SyncRunnerDeps) {
  const { db, store, schema, namespace: ns, ports, connectors, redactor, logger, clock } = deps;
  const endRetryDelaysMs = deps.endRetryDelaysMs ?? [1_000, 5_000, 15_000];

  function outbox<N extends IntegrationEventName>(name: N, jobId: string, traceparent: string | undefined, message: IntegrationEventMessage<N>) {
    return (recorded: AppendedEvent[]): OutboxMessage[] =>
      recorded.map((r) => integrationEventMessage(ns, name, message, { eventId: r.eventId, source: SOURCE, subject: jobId, time: r.recordedAt, traceparent }));
  }

  const asNew = (events: SyncJobEvent[], event: CloudEvent, jobId: string): NewEvent[] =>
    events.map((e) => ({
      type: e.type,
      data: { ...e.data },
      metadata: { actor: 'sync-worker', correlationId: jobId, causationId: event.id, traceparent: event.traceparent },
    }));

  /**
   * Runs source → destination with hydrated configs. Every secret value is registered with the
   * redactor before a connector runs and stays registered until the failure reason is redacted and
   * logged: the reason is worked out here, inside the registration, never after it.
   */
  async function run(jobId: string, connectionId: string, signal: AbortSignal): Promise<{ recordsSynced: number } | { reason: string }> {
    const registered: string[] = [];
    try {
      const plan = await ports.getSyncPlan(connectionId);
      if (!plan.source || !plan.destination) throw new ConnectorError('the sync plan has no source or no destination');
      const source = connectors.sources[plan.source.connector];
      const destination = connectors.destinations[plan.destination.connector];
      if (!source) throw new ConnectorError(`unknown source connector ${plan.source.connector}`);
      if (!destination) throw new ConnectorError(`unknown destination connector ${plan.destination.connector}`);
      const hydrated = [];
      for (const [name, side] of [['source', plan.source], ['destination', plan.destination]] as const) {
        const partial = parseObject(side.partialConfigJson, `the ${name} partial config`);
        const full = await ports.hydrate(plan.workspaceId, side.partialConfigJson, `sync ${jobId}`, side.actorId);
        const config = parseObject(full, `the hydrated ${name} config`);
        for (const v of secretValues(partial, config)) {
          redactor.register(v);
          registered.push(v);
        }
        hydrated.push(config);
      }
      return { recordsSynced: await destination.write(hydrated[1]!, source.read(hydrated[0]!, signal), signal) };
    } catch (err) {
      if (err instanceof ConnectorError) return { reason: redactor.redact(err.message) };
      if (isCofferError(err)) return { reason: redactor.redact(`${err.code}: ${err.message}`) };
      // The logger redacts with the values still registered; the caller gets nothing of the message.
      logger.error({ err, jobId }, 'sync failed unexpectedly');
      return { reason: 'internal error (see the sync worker log)' };
    } finally {
      // The plaintext configs go out of scope here; the redactor forgets them once this sync ends.
      for (const v of registered) redactor.unregister(v);
    }
  }

  /** Appends the job's last event, retrying transient failures: a lost outcome would leave the job running forever. */
  async function recordEnd(jobId: string, events: NewEvent[], options: AppendOptions): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await store.append(streamOf(jobId), 1, events, options);
        return;
      } catch (err) {
        // Someone else ended the job (a reaper, an operator): theirs stands.
        if (isCofferError(err) && err.code === 'version_conflict') {
          logger.warn({ jobId }, 'sync job already ended elsewhere; keeping that outcome');
          return;
        }
        const delay = endRetryDelaysMs[attempt];
        if (delay === undefined) throw err;
        logger.warn({ err, jobId, attempt: attempt + 1 }, 'could not record how the sync ended; retrying');
        await sleep(delay);
      }
    }
  }

  /** Handles one SyncRequested event; a redelivered event finds its id in the inbox and does nothing. */
  async function handleSyncRequested(event: CloudEvent, signal: AbortSignal = new AbortController().signal): Promise<void> {
    const request = event.data as IntegrationEventMessage<'SyncRequested'>;
    const { jobId, connectionId, workspaceId } = request;
    // Fails every delivery, so a malformed request ends on the dead-letter subject.
    if (![jobId, connectionId, workspaceId].every((id) => typeof id === 'string' && UUID.test(id))) {
      throw new CofferError('invalid_argument', 'SyncRequested needs uuid job_id, connection_id and workspace_id');
    }
    const traceparent = event.traceparent;
    const started = decide({ type: 'StartSyncJob', jobId, connectionId, workspaceId, now: clock().toISOString() }, initialState());
    const startedData = started[0]!.data as SyncJobStartedData;
    let fresh: boolean;
    try {
      fresh = await db.transaction().execute(async (trx) => {
        if (!(await recordInbox(trx, schema, SYNC_REQUESTED_CONSUMER, event.id))) return false;
        await store.appendInTransaction(trx, streamOf(jobId), 0, asNew(started, event, jobId), {
          project: (t) => projectJobStarted(t, schema, startedData),
          outbox: outbox('SyncStarted', jobId, traceparent, { jobId, connectionId, occurredAt: startedData.startedAt }),
        });
        return true;
      });
    } catch (err) {
      // The same job id under another event id (a re-published request): the job runs once.
      if (isCofferError(err) && err.code === 'version_conflict') {
        logger.warn({ jobId, eventId: event.id }, 'sync job already started by another SyncRequested event');
        return;
      }
      throw err;
    }
    if (!fresh) {
      logger.info({ jobId, eventId: event.id }, 'SyncRequested already handled');
      return;
    }
    logger.info({ jobId, connectionId }, 'sync started');
    const state = started.reduce(evolve, initialState());
    const runStarted = performance.now();
    const result = await run(jobId, connectionId, signal);
    const ended =
      'recordsSynced' in result && Number.isSafeInteger(result.recordsSynced) && result.recordsSynced >= 0
        ? decide({ type: 'CompleteSyncJob', recordsSynced: result.recordsSynced, now: clock().toISOString() }, state)
        : decide({ type: 'FailSyncJob', reason: 'reason' in result ? result.reason : 'the destination reported an invalid record count', now: clock().toISOString() }, state);
    const end = ended[0]!;
    if (end.type === 'SyncJobSucceeded') {
      const d = end.data;
      await recordEnd(jobId, asNew(ended, event, jobId), {
        project: (t) => projectJobSucceeded(t, schema, d),
        outbox: outbox('SyncSucceeded', jobId, traceparent, { jobId, connectionId, recordsSynced: d.recordsSynced, occurredAt: d.endedAt }),
      });
      syncMetrics().duration.record((performance.now() - runStarted) / 1000, { outcome: 'succeeded' });
      logger.info({ jobId, recordsSynced: d.recordsSynced }, 'sync succeeded');
    } else if (end.type === 'SyncJobFailed') {
      const d = end.data;
      await recordEnd(jobId, asNew(ended, event, jobId), {
        project: (t) => projectJobFailed(t, schema, d),
        outbox: outbox('SyncFailed', jobId, traceparent, { jobId, connectionId, reason: d.reason, occurredAt: d.endedAt }),
      });
      syncMetrics().duration.record((performance.now() - runStarted) / 1000, { outcome: 'failed' });
      logger.warn({ jobId, reason: d.reason }, 'sync failed');
    }
  }

  return { handleSyncRequested };
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
