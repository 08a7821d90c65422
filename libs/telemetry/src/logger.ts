import { isSpanContextValid, trace } from '@opentelemetry/api';
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { Redactor } from './redactor';

/** The logger every Coffer process uses (pino). */
export type Logger = PinoLogger;
export type { DestinationStream };

/** Options of `createLogger`. */
export interface LoggerOptions {
  /** Goes into every line as `service`. */
  service: string;
  /** pino level, default `info`. */
  level?: string;
  /** Every finished line passes through it before it is written. */
  redactor?: Redactor;
  /** Where lines go, default stdout. */
  destination?: DestinationStream;
}

interface SerializedError {
  type: string;
  message: string;
  stack?: string;
  code?: string;
  cause?: SerializedError;
}

// Keeps what helps debugging (type, message, stack, a string code) and drops the rest: arbitrary
// enumerable properties of library errors (pg, grpc) can carry query parameters or request bodies.
function errorSerializer(redact: (s: string) => string) {
  function serialize(err: unknown, depth: number): SerializedError {
    if (!(err instanceof Error)) return { type: typeof err, message: redact(String(err)) };
    const out: SerializedError = { type: err.name || err.constructor?.name || 'Error', message: redact(err.message) };
    if (err.stack) out.stack = redact(err.stack);
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') out.code = redact(code);
    if (err.cause !== undefined && depth < 3) out.cause = serialize(err.cause, depth + 1);
    return out;
  }
  return (err: unknown) => serialize(err, 0);
}

/** Creates a JSON-lines logger whose every line is redacted just before it is written. */
export function createLogger(options: LoggerOptions): Logger {
  const redactor = options.redactor;
  const redact = redactor ? (s: string) => redactor.redact(s) : (s: string) => s;
  const serializeError = errorSerializer(redact);
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError, error: serializeError },
      // Lines written inside a span carry its ids, so a log line leads to its trace and back.
      mixin() {
        const sc = trace.getActiveSpan()?.spanContext();
        return sc && isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : {};
      },
      // The last point before bytes leave: whatever a caller logged, nested or escaped, is covered.
      hooks: { streamWrite: redact },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
