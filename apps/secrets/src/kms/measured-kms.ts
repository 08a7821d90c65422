import { metrics } from '@opentelemetry/api';
import type { KeyManagementService } from './kms';

const MEASURED = ['wrap', 'unwrap', 'createVersion', 'retireVersion', 'versions', 'refresh'] as const;

/**
 * The KMS with each call counted and timed (`coffer.kms.duration`, by provider, operation and
 * outcome), for the metrics endpoint. Arguments and results are never recorded: they are data keys.
 */
export function measuredKms(kms: KeyManagementService): KeyManagementService {
  const duration = metrics.getMeter('@coffer/secrets').createHistogram('coffer.kms.duration', {
    unit: 'ms',
    description: 'time of a KMS call, by provider, operation and outcome (ok or error)',
    advice: { explicitBucketBoundaries: [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000] },
  });
  const measured = Object.create(kms) as KeyManagementService;
  for (const operation of MEASURED) {
    const call = kms[operation] as ((...args: unknown[]) => Promise<unknown>) | undefined;
    if (!call) continue;
    Object.defineProperty(measured, operation, {
      value: async (...args: unknown[]) => {
        const started = performance.now();
        let outcome = 'error';
        try {
          const result = await call.apply(kms, args);
          outcome = 'ok';
          return result;
        } finally {
          duration.record(performance.now() - started, { provider: kms.provider, operation, outcome });
        }
      },
    });
  }
  return measured;
}
