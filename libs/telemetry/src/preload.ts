/**
 * Preloaded with `node --import` before a service's `main.ts` (the stack launcher, the container
 * image and the manifests all pass it): registers the gRPC and Postgres instrumentation before
 * `@grpc/grpc-js` and `pg` load, so their calls make spans. Only when traces are exported
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` set, the variable `startTelemetry` gets from the service's config):
 * without a collector the instrumentation would wrap every call and statement for nothing. The
 * tracer provider is set later by `startTelemetry`; until then the instrumentation's tracer is the
 * API's proxy, which starts delegating once it is registered.
 */
import { register } from 'node:module';

// The preload runs before any config is parsed, so it reads the variable itself. The instrumentation
// packages load only when used. ESM imports of CommonJS packages do not go through `require`, so the
// require hook alone misses them; the import hook covers them, limited to the instrumented packages.
if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim()) {
  const [{ registerInstrumentations }, { instrumentations }] = await Promise.all([import('@opentelemetry/instrumentation'), import('./instrumentations')]);
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['@grpc/grpc-js', 'pg', 'pg-pool'] } });
  registerInstrumentations({ instrumentations: instrumentations() });
}
