import type { Kysely } from 'kysely';
import { isCofferError, type IntegrationEventMessage, type MessagingNamespace } from '@coffer/contracts';
import { recordInbox, type EventStore } from '@coffer/event-store';
import { integrationEventMessage, type CloudEvent } from '@coffer/messaging';
import { secretValues } from '@coffer/secret-json';
import type { Logger, Redactor } from '@coffer/telemetry';
import { ConnectorError, parseObject } from './connectors/connector';
import type { ConnectorRegistry } from './connectors/registry';
import type { SyncDatabase } from './sync.database';

/** What the check runner needs from secrets. */
export interface CheckPorts {
  /** Hydrates for the workspace that ran the check and the one run (`ownerId`, the job id) that wrote its secrets. */
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
}

/** What the check runner is composed from; secrets is reached through `ports`. */
export interface CheckRunnerDeps {
  db: Kysely<SyncDatabase>;
  store: EventStore<SyncDatabase>;
  schema: string;
  namespace: MessagingNamespace;
  ports: CheckPorts;
  connectors: ConnectorRegistry;
  redactor: Redactor;
  logger: Logger;
  clock: () => Date;
}

/** The inbox name of the CheckRequested consumer. */
export const CHECK_REQUESTED_CONSUMER = 'sync-worker-check-requested';
// Bounded after redacting, never before: a cut secret would no longer match the redactor.
const MAX_MESSAGE = 500;

/**
 * Runs check and discover jobs for unsaved configs: hydrates the ephemeral coordinates, registers
 * the values with the redactor, asks the connector, and records the result (once: the inbox row
 * and the result commit together) as CheckCompleted for config to hand back to its caller.
 */
export function createCheckRunner(deps: CheckRunnerDeps) {
  const { db, store, schema, namespace: ns, ports, connectors, redactor, logger, clock } = deps;

  async function run(request: IntegrationEventMessage<'CheckRequested'>, signal: AbortSignal): Promise<{ succeeded: boolean; message: string; catalogJson: string }> {
    const source = connectors.sources[request.connector];
    const destination = connectors.destinations[request.connector];
    if (!source && !destination) return { succeeded: false, message: `unknown connector ${request.connector}`, catalogJson: '' };
    if (request.kind === 'discover' && !source) return { succeeded: false, message: `${request.connector} is not a source: nothing to discover`, catalogJson: '' };
    const registered: string[] = [];
    try {
      const partial = parseObject(request.partialConfigJson, 'the partial config');
      const full = await ports.hydrate(request.workspaceId, request.partialConfigJson, `${request.kind} ${request.jobId}`, request.jobId);
      const config = parseObject(full, 'the hydrated config');
      for (const v of secretValues(partial, config)) {
        redactor.register(v);
        registered.push(v);
      }
      if (request.kind === 'discover') return { succeeded: true, message: '', catalogJson: JSON.stringify(await source!.discover(config, signal)) };
      await (source ? source.check(config, signal) : destination!.check(config, signal));
      return { succeeded: true, message: '', catalogJson: '' };
    } catch (err) {
      if (err instanceof ConnectorError) return { succeeded: false, message: redactor.redact(err.message).slice(0, MAX_MESSAGE), catalogJson: '' };
      if (isCofferError(err)) return { succeeded: false, message: redactor.redact(`${err.code}: ${err.message}`).slice(0, MAX_MESSAGE), catalogJson: '' };
      logger.error({ err, jobId: request.jobId }, 'check failed unexpectedly');
      return { succeeded: false, message: 'internal error (see the sync worker log)', catalogJson: '' };
    } finally {
      for (const v of registered) redactor.unregister(v);
    }
  }

  /** Handles one CheckRequested event; a redelivery after the result was recorded does nothing. */
  async function handleCheckRequested(event: CloudEvent, signal: AbortSignal = new AbortController().signal): Promise<void> {
    const request = event.data as IntegrationEventMessage<'CheckRequested'>;
    if (request.kind !== 'check' && request.kind !== 'discover') throw new ConnectorError(`unknown check kind ${request.kind}`);
    const result = await run(request, signal);
    const occurredAt = clock().toISOString();
    await db.transaction().execute(async (trx) => {
      if (!(await recordInbox(trx, schema, CHECK_REQUESTED_CONSUMER, event.id))) return;
      await store.appendInTransaction(
        trx,
        `check-${request.jobId}`,
        0,
        [{ type: 'CheckJobCompleted', data: { jobId: request.jobId, kind: request.kind, connector: request.connector, succeeded: result.succeeded, message: result.message, completedAt: occurredAt }, metadata: { actor: 'sync-worker' } }],
        {
          outbox: (recorded) =>
            recorded.map((r) =>
              integrationEventMessage(
                ns,
                'CheckCompleted',
                { jobId: request.jobId, kind: request.kind, succeeded: result.succeeded, message: result.message, catalogJson: result.catalogJson, occurredAt },
                { eventId: r.eventId, source: 'coffer/sync-worker', subject: request.jobId, time: r.recordedAt, traceparent: event.traceparent },
              ),
            ),
        },
      );
    });
    logger.info({ jobId: request.jobId, kind: request.kind, succeeded: result.succeeded }, 'check finished');
  }

  return { handleCheckRequested };
}

/** The check runner, as composed by main.ts. */
export type CheckRunner = ReturnType<typeof createCheckRunner>;
