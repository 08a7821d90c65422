import { basename } from 'node:path';
import { configV1 } from '@coffer/contracts';
import { UsageError } from './args';

/** A connector definition as `definitions register` sends it. */
export interface DefinitionToRegister {
  name: string;
  actorType: configV1.ActorType;
  connector: string;
  spec: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `source` / `destination` as the proto's ActorType; UsageError otherwise. */
export function actorTypeOption(value: string | undefined): configV1.ActorType | undefined {
  if (value === undefined) return undefined;
  if (value === 'source') return configV1.ActorType.ACTOR_TYPE_SOURCE;
  if (value === 'destination') return configV1.ActorType.ACTOR_TYPE_DESTINATION;
  throw new UsageError('--type must be source or destination');
}

/** The proto's ActorType as the word the CLI prints. */
export function actorTypeName(type: configV1.ActorType): string {
  return type === configV1.ActorType.ACTOR_TYPE_SOURCE ? 'source' : type === configV1.ActorType.ACTOR_TYPE_DESTINATION ? 'destination' : 'unspecified';
}

/**
 * Reads a definition from a spec file's JSON: `{name, actorType, connector, spec}`, an Airbyte spec
 * (`connectionSpecification`, a destination when it lists destination sync modes) or a bare JSON
 * schema. Flags override what the file says; the connector is required one way or the other.
 */
export function definitionFromFile(file: string, json: unknown, flags: { name?: string; type?: string; connector?: string }): DefinitionToRegister {
  if (!isObject(json)) throw new UsageError(`${file}: must hold a JSON object`);
  let spec: unknown;
  let name: unknown;
  let connector: unknown;
  let type: configV1.ActorType | undefined;
  if (isObject(json.spec) && (json.connector !== undefined || json.actorType !== undefined)) {
    spec = json.spec;
    name = json.name;
    connector = json.connector;
    type = typeof json.actorType === 'string' ? actorTypeOption(json.actorType) : undefined;
  } else if (json.connectionSpecification !== undefined) {
    spec = json.connectionSpecification;
    name = isObject(spec) ? spec.title : undefined;
    type = Array.isArray(json.supported_destination_sync_modes) ? configV1.ActorType.ACTOR_TYPE_DESTINATION : configV1.ActorType.ACTOR_TYPE_SOURCE;
  } else {
    spec = json;
    name = json.title;
  }
  if (!isObject(spec)) throw new UsageError(`${file}: the spec must be a JSON object`);
  const resolvedName = flags.name ?? (typeof name === 'string' && name ? name : basename(file).replace(/\.json$/, ''));
  const resolvedConnector = flags.connector ?? (typeof connector === 'string' ? connector : undefined);
  if (!resolvedConnector) throw new UsageError(`${file}: name the connector with --connector (e.g. builtin:http-json)`);
  return { name: resolvedName, actorType: actorTypeOption(flags.type) ?? type ?? configV1.ActorType.ACTOR_TYPE_SOURCE, connector: resolvedConnector, spec };
}
