import type { Kysely } from 'kysely';
import { isCofferError, type IntegrationEventMessage, type IntegrationEventName, type MessagingNamespace } from '@coffer/contracts';
import { recordInbox, type EventStore, type NewEvent, type OutboxMessage, type RecordedEvent } from '@coffer/event-store';
import { integrationEventMessage, type CloudEvent } from '@coffer/messaging';
import { secretValues } from '@coffer/secret-json';
import type { Logger, Redactor } from '@coffer/telemetry';
import { ConnectorError } from './connectors/connector';
import type { ConnectorRegistry } from './connectors/registry';
import {
  decide,
  evolve,
  initialState,
  type SyncJobEvent,
  type SyncJobFailedData,
  type SyncJobStartedData,
  type SyncJobSucceededData,
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
  hydrate(workspaceId: string, partialConfigJson: string, reason: string): Promise<string>;
}

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
}

/** The inbox name of the SyncRequested consumer. */
export const SYNC_REQUESTED_CONSUMER = 'sync-worker-sync-requested';
const SOURCE = 'coffer/sync-worker';
const streamOf = (jobId: string) => `sync-job-${jobId}`;

/** The SyncRequested handler: start the job (once), run it, record how it ended. */
export function createSyncRunner(deps: SyncRunnerDeps) {
  const { db, store, schema, namespace: ns, ports, connectors, redactor, logger, clock } = deps;

  function outbox<N extends IntegrationEventName>(name: N, jobId: string, traceparent: string | undefined, message: IntegrationEventMessage<N>) {
    return (recorded: RecordedEvent[]): OutboxMessage[] =>
      recorded.map((r) => integrationEventMessage(ns, name, message, { eventId: r.eventId, source: SOURCE, subject: jobId, time: r.recordedAt, traceparent }));
  }

  const asNew = (events: SyncJobEvent[], traceparent?: string): NewEvent[] =>
    events.map((e) => ({ type: e.type, data: { ...e.data }, metadata: { actor: 'sync-worker', traceparent } }));

  /** Runs source → destination with hydrated configs; every secret value is registered with the redactor first. */
  async function run(jobId: string, plan: SyncPlan, signal: AbortSignal): Promise<number> {
    if (!plan.source || !plan.destination) throw new ConnectorError('the sync plan has no source or no destination');
    const source = connectors.sources[plan.source.connector];
    const destination = connectors.destinations[plan.destination.connector];
    if (!source) throw new ConnectorError(`unknown source connector ${plan.source.connector}`);
    if (!destination) throw new ConnectorError(`unknown destination connector ${plan.destination.connector}`);
    const registered: string[] = [];
    try {
      const hydrated = [];
      for (const side of [plan.source, plan.destination]) {
        const full = await ports.hydrate(plan.workspaceId, side.partialConfigJson, `sync ${jobId}`);
        const config = JSON.parse(full) as Record<string, unknown>;
        for (const v of secretValues(JSON.parse(side.partialConfigJson), config)) {
          redactor.register(v);
          registered.push(v);
        }
        hydrated.push(config);
      }
      return await destination.write(hydrated[1]!, source.read(hydrated[0]!, signal), signal);
    } finally {
      // The plaintext configs go out of scope here; the redactor forgets them once this sync ends.
      for (const v of registered) redactor.unregister(v);
    }
  }

  function failureReason(err: unknown): string {
    if (err instanceof ConnectorError) return redactor.redact(err.message);
    if (isCofferError(err)) return redactor.redact(`${err.code}: ${err.message}`);
    return 'internal error (see the sync worker log)';
  }

  /** Handles one SyncRequested event; a redelivered event finds its id in the inbox and does nothing. */
  async function handleSyncRequested(event: CloudEvent, signal: AbortSignal = new AbortController().signal): Promise<void> {
    const request = event.data as IntegrationEventMessage<'SyncRequested'>;
    const { jobId, connectionId, workspaceId } = request;
    const traceparent = event.traceparent;
    const started = decide({ type: 'StartSyncJob', jobId, connectionId, workspaceId, now: clock().toISOString() }, initialState());
    const startedData = started[0]!.data as SyncJobStartedData;
    const fresh = await db.transaction().execute(async (trx) => {
      if (!(await recordInbox(trx, schema, SYNC_REQUESTED_CONSUMER, event.id))) return false;
      await store.appendInTransaction(trx, streamOf(jobId), 0, asNew(started, traceparent), {
        project: (t) => projectJobStarted(t, schema, startedData),
        outbox: outbox('SyncStarted', jobId, traceparent, { jobId, connectionId, occurredAt: startedData.startedAt }),
      });
      return true;
    });
    if (!fresh) {
      logger.info({ jobId, eventId: event.id }, 'SyncRequested already handled');
      return;
    }
    logger.info({ jobId, connectionId }, 'sync started');
    const state = started.reduce(evolve, initialState());
    let ended: SyncJobEvent[];
    try {
      const plan = await ports.getSyncPlan(connectionId);
      const recordsSynced = await run(jobId, plan, signal);
      ended = decide({ type: 'CompleteSyncJob', recordsSynced, now: clock().toISOString() }, state);
    } catch (err) {
      const reason = failureReason(err);
      if (!(err instanceof ConnectorError) && !isCofferError(err)) logger.error({ err, jobId }, 'sync failed unexpectedly');
      ended = decide({ type: 'FailSyncJob', reason, now: clock().toISOString() }, state);
    }
    const end = ended[0]!;
    if (end.type === 'SyncJobSucceeded') {
      const d = end.data as SyncJobSucceededData;
      await store.append(streamOf(jobId), 1, asNew(ended, traceparent), {
        project: (t) => projectJobSucceeded(t, schema, d),
        outbox: outbox('SyncSucceeded', jobId, traceparent, { jobId, connectionId, recordsSynced: d.recordsSynced, occurredAt: d.endedAt }),
      });
      logger.info({ jobId, recordsSynced: d.recordsSynced }, 'sync succeeded');
    } else {
      const d = end.data as SyncJobFailedData;
      await store.append(streamOf(jobId), 1, asNew(ended, traceparent), {
        project: (t) => projectJobFailed(t, schema, d),
        outbox: outbox('SyncFailed', jobId, traceparent, { jobId, connectionId, reason: d.reason, occurredAt: d.endedAt }),
      });
      logger.warn({ jobId, reason: d.reason }, 'sync failed');
    }
  }

  return { handleSyncRequested };
}

/** The sync runner, as composed by main.ts. */
export type SyncRunner = ReturnType<typeof createSyncRunner>;
