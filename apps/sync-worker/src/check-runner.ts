import { isCofferError } from '@coffer/contracts';
import { secretValues } from '@coffer/secret-json';
import type { Logger, Redactor } from '@coffer/telemetry';
import { ConnectorError, parseObject } from './connectors/connector';
import type { ConnectorRegistry } from './connectors/registry';
import type { CheckJobResult, FailureCode } from './domain/sync-job.decider';

/** What the check runner needs from secrets. */
export interface CheckPorts {
  /** Hydrates for the workspace that ran the check and the one run (`ownerId`, the job id) that wrote its secrets. */
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
}

/** What the check runner is composed from; secrets is reached through `ports`. */
export interface CheckRunnerDeps {
  ports: CheckPorts;
  connectors: ConnectorRegistry;
  redactor: Redactor;
  logger: Logger;
}

/** One attempt of a check or discover job, as the job scheduler hands it over. */
export interface CheckAttempt {
  jobId: string;
  kind: 'check' | 'discover';
  workspaceId: string;
  connector: string;
  partialConfigJson: string;
}

/**
 * An attempt's outcome: the connector's answer (`result`, whatever its verdict on the config), or a
 * failure of the attempt itself (it timed out, secrets could not hydrate, something broke), which the
 * job's retry policy then handles.
 */
export type CheckAttemptOutcome = { result: CheckJobResult } | { code: FailureCode; reason: string };

/** The inbox name of the CheckRequested consumer. */
export const CHECK_REQUESTED_CONSUMER = 'sync-worker-check-requested';
// Bounded after redacting, never before: a cut secret would no longer match the redactor.
const MAX_MESSAGE = 500;
const TRANSIENT: ReadonlySet<string> = new Set(['unavailable', 'internal', 'version_conflict']);

/**
 * Runs one attempt of a check or discover job for an unsaved config: hydrates the ephemeral
 * coordinates, registers the values with the redactor, and asks the connector. The job lifecycle
 * (queue, attempts, back-off, timeout, CheckCompleted) is the sync runner's, shared with sync jobs.
 */
export function createCheckRunner(deps: CheckRunnerDeps) {
  const { ports, connectors, redactor, logger } = deps;
  const answer = (succeeded: boolean, message = '', catalogJson = ''): CheckAttemptOutcome => ({ result: { succeeded, message, catalogJson } });

  async function run(job: CheckAttempt, signal: AbortSignal): Promise<CheckAttemptOutcome> {
    const source = connectors.sources[job.connector];
    const destination = connectors.destinations[job.connector];
    if (!source && !destination) return answer(false, `unknown connector ${job.connector}`);
    if (job.kind === 'discover' && !source) return answer(false, `${job.connector} is not a source: nothing to discover`);
    const registered: string[] = [];
    try {
      const partial = parseObject(job.partialConfigJson, 'the partial config');
      const full = await ports.hydrate(job.workspaceId, job.partialConfigJson, `${job.kind} ${job.jobId}`, job.jobId);
      const config = parseObject(full, 'the hydrated config');
      for (const v of secretValues(partial, config)) {
        redactor.register(v);
        registered.push(v);
      }
      if (job.kind === 'discover') {
        const catalog = await source!.discover(config, signal);
        signal.throwIfAborted();
        return answer(true, '', JSON.stringify(catalog));
      }
      await (source ? source.check(config, signal) : destination!.check(config, signal));
      signal.throwIfAborted();
      return answer(true);
    } catch (err) {
      if (signal.aborted && signal.reason === 'timeout') return { code: 'timeout', reason: `the ${job.kind} ran out of time` };
      if (signal.aborted) return { code: 'internal', reason: `the ${job.kind} was stopped` };
      // The connector answered: its verdict on the config is the job's result, not a failure to retry.
      if (err instanceof ConnectorError) return answer(false, redactor.redact(err.message).slice(0, MAX_MESSAGE));
      if (isCofferError(err)) {
        const message = redactor.redact(`${err.code}: ${err.message}`).slice(0, MAX_MESSAGE);
        // Secrets or config out of reach for now is worth another attempt; a refusal is an answer.
        return TRANSIENT.has(err.code) ? { code: 'internal', reason: message } : answer(false, message);
      }
      logger.error({ err, jobId: job.jobId }, `${job.kind} failed unexpectedly`);
      return { code: 'internal', reason: 'internal error (see the sync worker log)' };
    } finally {
      for (const v of registered) redactor.unregister(v);
    }
  }

  return { run };
}

/** The check runner, as composed by main.ts. */
export type CheckRunner = ReturnType<typeof createCheckRunner>;
