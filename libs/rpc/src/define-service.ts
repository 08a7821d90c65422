import type * as grpc from '@grpc/grpc-js';
import { isPermission } from '@coffer/tokens';
import type { DefinitionHandlers, MethodSpec } from './call-context';

/** A service ready to be added to `createGrpcServer`: its definition, full name and checked handlers. */
export interface ServiceRegistration {
  /** Fully qualified name, e.g. `coffer.secrets.v1.SecretsService` (health and reflection use it). */
  readonly name: string;
  readonly definition: grpc.ServiceDefinition;
  readonly methods: Readonly<Record<string, MethodSpec<unknown, unknown>>>;
}

/**
 * Pairs a grpc-js service definition with its handlers. Throws at start-up when a method has no
 * handler or no valid permission, when a handler names no method, or when a method streams.
 */
export function defineService<D extends grpc.ServiceDefinition>(definition: D, name: string, handlers: DefinitionHandlers<D>): ServiceRegistration {
  const given = handlers as unknown as Record<string, Partial<MethodSpec<unknown, unknown>> | undefined>;
  const methods: Record<string, MethodSpec<unknown, unknown>> = {};
  for (const [key, method] of Object.entries(definition)) {
    if (!method.path.startsWith(`/${name}/`)) throw new Error(`${name}: method ${key} has path ${method.path}, which is not in this service`);
    if (method.requestStream || method.responseStream) throw new Error(`${name}.${key}: streaming methods are not supported`);
    const spec = Object.hasOwn(given, key) ? given[key] : undefined;
    if (!spec || typeof spec.handler !== 'function') throw new Error(`${name}.${key}: no handler declared`);
    if (spec.permission !== 'public' && !isPermission(spec.permission)) {
      throw new Error(`${name}.${key}: permission must be 'public' or a known permission, got ${String(spec.permission)}`);
    }
    if (spec.tokenKinds !== undefined && (spec.permission === 'public' || spec.tokenKinds.length === 0)) {
      throw new Error(`${name}.${key}: tokenKinds needs a protected method and at least one kind`);
    }
    methods[key] = spec.tokenKinds ? { permission: spec.permission, tokenKinds: spec.tokenKinds, handler: spec.handler } : { permission: spec.permission, handler: spec.handler };
  }
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(definition, key)) throw new Error(`${name}: handler ${key} matches no method of the service`);
  }
  return Object.freeze({ name, definition: definition as grpc.ServiceDefinition, methods: Object.freeze(methods) });
}
