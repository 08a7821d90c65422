export { createRedactor, MIN_REDACTED_LENGTH, REDACTED, type Redactor } from './redactor';
export { createLogger, type DestinationStream, type Logger, type LoggerOptions } from './logger';
export { contextOfTraceparent, currentTraceparent, startTelemetry, type Telemetry, type TelemetryOptions } from './tracing';
export { startOpsServer, type OpsServer, type OpsServerOptions, type ReadinessCheck } from './ops-server';
