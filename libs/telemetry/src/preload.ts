/**
 * Preloaded with `node --import` before a service's `main.ts` (the stack launcher, the container
 * image and the manifests all pass it): registers the gRPC and Postgres instrumentation before
 * `@grpc/grpc-js` and `pg` load, so their calls make spans. It reads no settings: the tracer and
 * meter providers are set later by `startTelemetry` from the app's config, and until then the
 * instrumentation's tracer is the API's proxy, which starts delegating once they are registered.
 */
import { register } from 'node:module';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { instrumentations } from './instrumentations';

// ESM imports of CommonJS packages do not go through `require`, so the require hook alone misses
// them; the import hook covers them, limited to the instrumented packages.
register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['@grpc/grpc-js', 'pg', 'pg-pool'] } });
registerInstrumentations({ instrumentations: instrumentations() });
