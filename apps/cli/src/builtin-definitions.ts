import { configV1 } from '@coffer/contracts';

/** A connector definition the sync worker can run without any external connector image. */
export interface BuiltinDefinition {
  name: string;
  actorType: configV1.ActorType;
  /** The sync worker's connector name (apps/sync-worker/src/connectors/registry.ts). */
  connector: string;
  spec: Record<string, unknown>;
}

/**
 * The sync worker's built-in connectors as definitions, registered on a development stack's first
 * start. Each spec lists the fields its connector reads; `airbyte_secret` marks the ones config
 * swaps for a secret coordinate.
 */
export const builtinDefinitions: readonly BuiltinDefinition[] = [
  {
    name: 'HTTP JSON API',
    actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
    connector: 'builtin:http-json',
    spec: {
      $schema: 'http://json-schema.org/draft-07/schema#',
      title: 'HTTP JSON API',
      description: 'GETs url with "Authorization: Bearer <api_token>" and reads each object of the JSON array it answers (or of its data or records array).',
      type: 'object',
      required: ['url', 'api_token'],
      additionalProperties: false,
      properties: {
        url: { type: 'string', format: 'uri', title: 'URL', order: 0 },
        api_token: { type: 'string', title: 'API token', airbyte_secret: true, order: 1 },
      },
    },
  },
  {
    name: 'Postgres',
    actorType: configV1.ActorType.ACTOR_TYPE_DESTINATION,
    connector: 'builtin:postgres',
    spec: {
      $schema: 'http://json-schema.org/draft-07/schema#',
      title: 'Postgres',
      description: 'Writes each record as a jsonb row into schema.table (both created if missing), all records of a sync in one transaction.',
      type: 'object',
      required: ['host', 'database', 'username', 'password', 'schema', 'table'],
      additionalProperties: false,
      properties: {
        host: { type: 'string', title: 'Host', order: 0 },
        port: { type: 'integer', title: 'Port', minimum: 1, maximum: 65535, default: 5432, order: 1 },
        database: { type: 'string', title: 'Database', order: 2 },
        username: { type: 'string', title: 'User name', order: 3 },
        password: { type: 'string', title: 'Password', airbyte_secret: true, order: 4 },
        schema: { type: 'string', title: 'Schema', order: 5 },
        table: { type: 'string', title: 'Table', order: 6 },
      },
    },
  },
];
