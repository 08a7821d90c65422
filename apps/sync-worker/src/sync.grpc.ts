import { CofferError, syncV1 } from '@coffer/contracts';
import { defineService, type ServiceRegistration } from '@coffer/rpc';
import type { Kysely } from 'kysely';
import type { ApiProxy } from './proxy/api-proxy';
import type { CodeExchange } from './oauth/code-exchange';
import type { SyncRunner } from './sync-runner';
import { findJob, listJobs, type JobCursor, type SyncJobRow } from './sync.postgres';
import type { SyncDatabase } from './sync.database';

const statusOf = {
  running: syncV1.SyncJobStatus.SYNC_JOB_STATUS_RUNNING,
  succeeded: syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED,
  failed: syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED,
  queued: syncV1.SyncJobStatus.SYNC_JOB_STATUS_QUEUED,
  cancelled: syncV1.SyncJobStatus.SYNC_JOB_STATUS_CANCELLED,
} as const;

/** gRPC handlers of coffer.sync.v1.SyncService. */
export function syncGrpcService(db: Kysely<SyncDatabase>, schema: string, runner?: Pick<SyncRunner, 'cancel'>, proxy?: Pick<ApiProxy, 'send'>, codeExchange?: CodeExchange): ServiceRegistration {
  return defineService(syncV1.SyncServiceService, 'coffer.sync.v1.SyncService', {
    getSyncJob: {
      permission: 'sync.read',
      handler: async (req) => {
        if (!req.jobId) throw new CofferError('invalid_argument', 'job_id is required', [{ field: 'job_id', reason: 'required' }]);
        if (req.jobId.length > 200) throw new CofferError('invalid_argument', 'job_id must be at most 200 characters', [{ field: 'job_id', reason: 'too long' }]);
        const job = await findJob(db, schema, req.jobId);
        if (!job) throw notFound();
        return { job: jobOut(job) };
      },
    },
    cancelSyncJob: {
      permission: 'sync.cancel',
      handler: async (req, ctx) => {
        if (!req.jobId) throw new CofferError('invalid_argument', 'job_id is required', [{ field: 'job_id', reason: 'required' }]);
        if (!uuid.test(req.jobId)) throw new CofferError('invalid_argument', 'job_id must be a UUID', [{ field: 'job_id', reason: 'not a UUID' }]);
        checkWorkspaceId(req.workspaceId);
        if (!runner) throw new CofferError('unavailable', 'this server does not run jobs');
        // Another workspace's job is answered exactly like one that does not exist.
        if (req.workspaceId && (await findJob(db, schema, req.jobId))?.workspace_id !== req.workspaceId.toLowerCase()) throw notFound();
        await runner.cancel(req.jobId, ctx.principal?.subject ?? 'unknown');
        const job = await findJob(db, schema, req.jobId);
        return { job: job && jobOut(job) };
      },
    },
    exchangeAuthorizationCode: {
      permission: 'sync.oauth_exchange',
      tokenKinds: ['service'],
      handler: async (req, ctx) => {
        if (!codeExchange) throw new CofferError('unavailable', 'this server does not exchange authorization codes');
        return codeExchange(req, ctx.signal ?? AbortSignal.timeout(30_000));
      },
    },
    listSyncJobs: {
      permission: 'sync.read',
      handler: async (req) => {
        for (const [field, value] of [['workspace_id', req.workspaceId], ['connection_id', req.connectionId]] as const) {
          if (value && !uuid.test(value)) throw new CofferError('invalid_argument', `${field} must be a UUID`, [{ field, reason: 'not a UUID' }]);
        }
        if (!req.workspaceId && !req.connectionId) {
          throw new CofferError('invalid_argument', 'workspace_id or connection_id is required', [{ field: 'workspace_id', reason: 'required without connection_id' }]);
        }
        if (req.pageSize < 0 || req.pageSize > 500) throw new CofferError('invalid_argument', 'page_size must be between 0 and 500', [{ field: 'page_size', reason: 'out of range' }]);
        const pageSize = req.pageSize || 50;
        const after = req.pageToken ? parseCursor(req.pageToken) : undefined;
        // One more than the page, to know whether another page follows.
        const rows = await listJobs(db, schema, { workspaceId: req.workspaceId || undefined, connectionId: req.connectionId || undefined, limit: pageSize + 1, after });
        const page = rows.slice(0, pageSize);
        return { jobs: page.map(jobOut), nextPageToken: rows.length > pageSize ? encodeCursor(page[page.length - 1]!.cursor) : '' };
      },
    },
    proxyRequest: {
      // Config checks the caller's access to the actor and forwards; no other caller may make the worker use a credential.
      permission: 'sync.proxy',
      tokenKinds: ['service'],
      handler: async (req, ctx) => {
        for (const [field, value] of [['workspace_id', req.workspaceId], ['actor_id', req.actorId]] as const) {
          if (!uuid.test(value)) throw new CofferError('invalid_argument', `${field} must be a UUID`, [{ field, reason: 'not a UUID' }]);
        }
        if (!req.proxyJson) throw new CofferError('failed_precondition', "the actor's connector definition declares no x-coffer-proxy");
        if (!proxy) throw new CofferError('unavailable', 'this server does not proxy requests');
        return proxy.send(req, ctx.signal);
      },
    },
  });
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The one answer for a job that does not exist or is not the caller's workspace's. */
export const notFound = () => new CofferError('not_found', 'no such sync job', [{ field: 'job_id', reason: 'not found' }]);

function checkWorkspaceId(workspaceId: string): void {
  if (workspaceId && !uuid.test(workspaceId)) throw new CofferError('invalid_argument', 'workspace_id must be a UUID', [{ field: 'workspace_id', reason: 'not a UUID' }]);
}

function jobOut(job: SyncJobRow) {
  return {
    jobId: job.job_id,
    kind: job.kind,
    workspaceId: job.workspace_id,
    connectionId: job.connection_id ?? '',
    recordsPerStream: { ...job.records_per_stream },
    status: statusOf[job.status],
    recordsSynced: Number(job.records_synced),
    failureReason: job.failure_reason ?? '',
    startedAt: job.started_at.toISOString(),
    endedAt: job.ended_at?.toISOString() ?? '',
    attempts: job.attempts,
    workerId: job.worker_id ?? '',
    failureCode: job.failure_code ?? '',
  };
}

/** A page token: the last job of the page, opaque to callers. */
export function encodeCursor(cursor: JobCursor): string {
  return Buffer.from(JSON.stringify([cursor.startedAt, cursor.jobId])).toString('base64url');
}

/** Reads a page token back; a token this service did not make is INVALID_ARGUMENT. */
export function parseCursor(token: string): JobCursor {
  const invalid = () => new CofferError('invalid_argument', 'page_token is not one this service issued', [{ field: 'page_token', reason: 'invalid' }]);
  if (token.length > 200) throw invalid();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(value) || value.length !== 2) throw invalid();
  const [startedAt, jobId] = value as unknown[];
  if (typeof startedAt !== 'string' || !/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/.test(startedAt) || typeof jobId !== 'string' || !uuid.test(jobId)) throw invalid();
  return { startedAt, jobId };
}
