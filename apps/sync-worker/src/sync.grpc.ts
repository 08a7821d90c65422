import { CofferError, syncV1 } from '@coffer/contracts';
import { defineService, type ServiceRegistration } from '@coffer/rpc';
import type { Kysely } from 'kysely';
import { findJob } from './sync.postgres';

const statusOf = {
  running: syncV1.SyncJobStatus.SYNC_JOB_STATUS_RUNNING,
  succeeded: syncV1.SyncJobStatus.SYNC_JOB_STATUS_SUCCEEDED,
  failed: syncV1.SyncJobStatus.SYNC_JOB_STATUS_FAILED,
} as const;

/** gRPC handlers of coffer.sync.v1.SyncService. */
export function syncGrpcService(db: Kysely<any>, schema: string): ServiceRegistration {
  return defineService(syncV1.SyncServiceService, 'coffer.sync.v1.SyncService', {
    getSyncJob: {
      permission: 'sync.read',
      handler: async (req) => {
        if (!req.jobId) throw new CofferError('invalid_argument', 'job_id is required', [{ field: 'job_id', reason: 'required' }]);
        if (req.jobId.length > 200) throw new CofferError('invalid_argument', 'job_id must be at most 200 characters', [{ field: 'job_id', reason: 'too long' }]);
        const job = await findJob(db, schema, req.jobId);
        if (!job) throw new CofferError('not_found', 'no such sync job', [{ field: 'job_id', reason: 'not found' }]);
        return {
          job: {
            jobId: job.job_id,
            connectionId: job.connection_id,
            status: statusOf[job.status],
            recordsSynced: Number(job.records_synced),
            failureReason: job.failure_reason ?? '',
            startedAt: job.started_at.toISOString(),
            endedAt: job.ended_at?.toISOString() ?? '',
          },
        };
      },
    },
  });
}
