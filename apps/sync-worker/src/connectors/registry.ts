import type { DestinationConnector, SourceConnector } from './connector';
import { httpJsonSource } from './http-json-source';
import { postgresDestination } from './postgres-destination';

/** The connectors this worker can run, by the name a connector definition gives. */
export interface ConnectorRegistry {
  sources: Record<string, SourceConnector>;
  destinations: Record<string, DestinationConnector>;
}

/** The built-in connectors. */
export function builtinConnectors(): ConnectorRegistry {
  return {
    sources: { 'builtin:http-json': httpJsonSource() },
    destinations: { 'builtin:postgres': postgresDestination() },
  };
}
