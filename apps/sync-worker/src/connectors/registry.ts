import type { DestinationConnector, SourceConnector } from './connector';
import type { EgressPolicy } from './egress-policy';
import { httpJsonSource } from './http-json-source';
import { postgresDestination } from './postgres-destination';

/** The connectors this worker can run, by the name a connector definition gives. */
export interface ConnectorRegistry {
  sources: Record<string, SourceConnector>;
  destinations: Record<string, DestinationConnector>;
}

/** The built-in connectors, all under one egress policy (deny private addresses when none is given). */
export function builtinConnectors(options: { egress?: EgressPolicy } = {}): ConnectorRegistry {
  return {
    sources: { 'builtin:http-json': httpJsonSource({ egress: options.egress }) },
    destinations: { 'builtin:postgres': postgresDestination({ egress: options.egress }) },
  };
}
