import { describe, expect, it } from 'vitest';
import { configV1 } from '@coffer/contracts';
import { secretPaths } from '@coffer/secret-json';
import { builtinConnectors } from '../../sync-worker/src/connectors/registry';
import { builtinDefinitions } from './builtin-definitions';

describe('built-in connector definitions', () => {
  it('name exactly the connectors the sync worker has built in, each once', () => {
    const worker = builtinConnectors();
    const sources = builtinDefinitions.filter((d) => d.actorType === configV1.ActorType.ACTOR_TYPE_SOURCE).map((d) => d.connector);
    const destinations = builtinDefinitions.filter((d) => d.actorType === configV1.ActorType.ACTOR_TYPE_DESTINATION).map((d) => d.connector);
    expect(sources.sort()).toEqual(Object.keys(worker.sources).sort());
    expect(destinations.sort()).toEqual(Object.keys(worker.destinations).sort());
  });

  it('mark the credentials the connectors read as secrets, and nothing else', () => {
    const paths = Object.fromEntries(builtinDefinitions.map((d) => [d.connector, secretPaths(d.spec)]));
    expect(paths).toEqual({ 'builtin:http-json': ['$.api_token'], 'builtin:postgres': ['$.password'] });
  });
});
