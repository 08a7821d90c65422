import { describe, expect, it } from 'vitest';
import { configV1 } from '@coffer/contracts';
import { UsageError } from './args';
import { definitionFromFile } from './definition-file';
import { egressAllowsLoopback } from './demo';

const schema = { type: 'object', title: 'Weather', properties: { api_token: { type: 'string', airbyte_secret: true } } };

describe('definitions register: the spec file', () => {
  it('reads a bare JSON schema: name from its title, connector from the flag, a source by default', () => {
    expect(definitionFromFile('w.json', schema, { connector: 'builtin:http-json' })).toEqual({ name: 'Weather', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', spec: schema });
  });

  it('reads an Airbyte spec: connectionSpecification, a destination when it lists destination sync modes', () => {
    const def = definitionFromFile('pg.json', { connectionSpecification: { ...schema, title: 'PG' }, supported_destination_sync_modes: ['append'] }, { connector: 'builtin:postgres' });
    expect(def).toMatchObject({ name: 'PG', actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION, connector: 'builtin:postgres' });
  });

  it('reads the full form, flags overriding it', () => {
    const file = { name: 'API', actorType: 'destination', connector: 'builtin:postgres', spec: schema };
    expect(definitionFromFile('f.json', file, {})).toMatchObject({ name: 'API', actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION, connector: 'builtin:postgres' });
    expect(definitionFromFile('f.json', file, { name: 'Other', type: 'source' })).toMatchObject({ name: 'Other', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE });
  });

  it('refuses what is not a definition, naming what is missing', () => {
    expect(() => definitionFromFile('w.json', schema, {})).toThrow(/--connector/);
    expect(() => definitionFromFile('w.json', [1], { connector: 'c' })).toThrow(UsageError);
    expect(() => definitionFromFile('w.json', schema, { connector: 'c', type: 'sink' })).toThrow('--type must be source or destination');
  });
});

describe('demo: egress allow-list', () => {
  it('knows when loopback is allowed', () => {
    expect(egressAllowsLoopback('127.0.0.1')).toBe(true);
    expect(egressAllowsLoopback('10.0.0.0/8, 127.0.0.0/8')).toBe(true);
    expect(egressAllowsLoopback('127.0.0.1:8080')).toBe(true);
    expect(egressAllowsLoopback(undefined)).toBe(false);
    expect(egressAllowsLoopback('10.0.0.0/8')).toBe(false);
  });
});
