import { authV1, configV1 } from '@coffer/contracts';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import type { BuiltinDefinition } from './builtin-definitions';

/** What a development stack's first start created; kept with the credentials so later starts reuse it. */
export interface DevelopmentSeed {
  organization: { organizationId: string; name: string };
  /** The first application's client credentials (the secret is shown once by auth, so it is kept here). */
  application: { clientId: string; clientSecret: string; name: string };
}

/** The seed, plus the built-in definitions as they stand in config (registered now or before). */
export interface SeedResult {
  seed: DevelopmentSeed;
  organizationCreated: boolean;
  definitions: { definitionId: string; name: string; connector: string; registered: boolean }[];
}

export interface SeedOptions {
  authAddress: string;
  configAddress: string;
  operator: { clientId: string; clientSecret: string };
  /** The seed of an earlier start against the same database; none creates an organization and an application. */
  existing?: DevelopmentSeed;
  definitions: readonly BuiltinDefinition[];
  /** Called as soon as a new organization and application exist, so a later failure does not lose them. */
  onCreated?: (seed: DevelopmentSeed) => Promise<void>;
}

async function listDefinitions(config: { listConnectorDefinitions(r: configV1.ListConnectorDefinitionsRequest): Promise<configV1.ListConnectorDefinitionsResponse> }) {
  const all: configV1.ConnectorDefinition[] = [];
  let pageToken = '';
  // Bounded: a development catalogue is small, and a server that kept answering tokens must not loop forever.
  for (let page = 0; page < 100; page++) {
    const res = await config.listConnectorDefinitions({ page: { pageSize: 500, pageToken }, actorType: configV1.ActorType.ACTOR_TYPE_UNSPECIFIED });
    all.push(...res.definitions);
    if (!res.nextPageToken) break;
    pageToken = res.nextPageToken;
  }
  return all;
}

/**
 * Creates, as the operator, a first organization and application (unless an earlier start did) and
 * registers each built-in connector definition that config does not hold yet.
 */
export async function seedDevelopment(options: SeedOptions): Promise<SeedResult> {
  const tokens = (audience: string) => createServiceTokenProvider({ authAddress: options.authAddress, ...options.operator, audience });
  const authTokens = tokens('auth');
  const configTokens = tokens('config');
  const auth = createPromiseClient(authV1.AuthServiceClient, options.authAddress, { tokenProvider: authTokens });
  const config = createPromiseClient(configV1.ConfigServiceClient, options.configAddress, { tokenProvider: configTokens });
  try {
    let seed = options.existing;
    if (!seed) {
      const name = 'Development';
      const { organization } = await auth.createOrganization({ name });
      const app = await auth.createApplication({ organizationId: organization!.organizationId, name, allowedOrigins: [] });
      seed = {
        organization: { organizationId: organization!.organizationId, name },
        application: { clientId: app.application!.clientId, clientSecret: app.clientSecret, name },
      };
      await options.onCreated?.(seed);
    }
    const held = await listDefinitions(config);
    const definitions: SeedResult['definitions'] = [];
    for (const def of options.definitions) {
      const found = held.find((d) => d.connector === def.connector && d.actorType === def.actorType && d.name === def.name);
      const definition =
        found ??
        (await config.registerConnectorDefinition({ name: def.name, actorType: def.actorType, connector: def.connector, specJson: JSON.stringify(def.spec) }))
          .definition!;
      definitions.push({ definitionId: definition.definitionId, name: def.name, connector: def.connector, registered: !found });
    }
    return { seed, organizationCreated: !options.existing, definitions };
  } finally {
    auth.close();
    config.close();
    authTokens.close();
    configTokens.close();
  }
}
