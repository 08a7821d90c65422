import { z } from 'zod';
import type { StreamSettings } from '@coffer/messaging';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTE_UNITS: Record<string, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** Revocations are read from two hours back (see `watchRevocations`), so no stream may keep less. */
const MIN_MAX_AGE_MS = 2 * 3_600_000;
const MIN_MAX_BYTES = 1024 ** 2;

/** Milliseconds of `7d`, `36h`, `90m`, `30s` or `500ms`; 0 for `unlimited`; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (text.trim() === 'unlimited') return 0;
  const m = /^(\d+)\s*(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Bytes of `1GiB`, `512MiB`, `64KiB` or a plain number; -1 for `unlimited`; undefined when malformed. */
export function parseByteSize(text: string): number | undefined {
  if (text.trim() === 'unlimited') return -1;
  const m = /^(\d+)\s*(b|kib|mib|gib|tib)?$/i.exec(text.trim());
  if (!m) return undefined;
  const bytes = Number(m[1]) * BYTE_UNITS[(m[2] ?? 'b').toLowerCase()]!;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * The settings of the service's own JetStream stream, spread into `commonEnv`: each service sets
 * the stream it owns (COFFER_<SERVICE>), so each stream can have its own.
 */
export const streamEnv = {
  COFFER_STREAM_MAX_AGE: z
    .string()
    .default('7d')
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined || (ms !== 0 && ms < MIN_MAX_AGE_MS)) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration of at least 2h such as 7d, 36h or 180m, or unlimited' });
        return z.NEVER;
      }
      return ms;
    })
    .describe("how long the service's own JetStream stream keeps messages (7d, 36h, 180m; at least 2h, since revocations are read two hours back), or unlimited"),
  // No size cap by default: JetStream reserves a stream's max bytes from the server's store when the
  // stream is created, so a default cap would claim disk on every server, development ones too.
  COFFER_STREAM_MAX_BYTES: z
    .string()
    .default('unlimited')
    .transform((v, ctx) => {
      const bytes = parseByteSize(v);
      if (bytes === undefined || (bytes !== -1 && bytes < MIN_MAX_BYTES)) {
        ctx.addIssue({ code: 'custom', message: 'must be a size of at least 1MiB such as 1GiB or 512MiB (or bytes), or unlimited' });
        return z.NEVER;
      }
      return bytes;
    })
    .describe("size cap of the service's own stream (1GiB, 512MiB or bytes; at least 1MiB), or unlimited: JetStream reserves a cap on every server up front"),
  COFFER_STREAM_MAX_MSGS: z
    .string()
    .default('unlimited')
    .transform((v, ctx) => {
      if (v.trim() === 'unlimited') return -1;
      const n = /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
      if (!Number.isSafeInteger(n) || n < 1) {
        ctx.addIssue({ code: 'custom', message: 'must be a positive whole number, or unlimited' });
        return z.NEVER;
      }
      return n;
    })
    .describe("message cap of the service's own stream, or unlimited"),
  COFFER_STREAM_REPLICAS: z.coerce.number({ error: 'must be a whole number from 1 to 5' }).int('must be a whole number from 1 to 5').min(1, 'must be a whole number from 1 to 5').max(5, 'must be a whole number from 1 to 5').default(1)
    .describe("replicas of the service's own stream in a NATS cluster"),
};

/** The stream settings from the parsed `COFFER_STREAM_*` variables. */
export function streamSettingsFromEnv(config: { COFFER_STREAM_MAX_AGE: number; COFFER_STREAM_MAX_BYTES: number; COFFER_STREAM_MAX_MSGS: number; COFFER_STREAM_REPLICAS: number }): StreamSettings {
  return {
    maxAgeMs: config.COFFER_STREAM_MAX_AGE,
    maxBytes: config.COFFER_STREAM_MAX_BYTES,
    maxMsgs: config.COFFER_STREAM_MAX_MSGS,
    replicas: config.COFFER_STREAM_REPLICAS,
  };
}
