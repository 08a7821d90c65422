import { create, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { ErrorDetail } from '@coffer/contracts';
import type { Principal } from '@coffer/tokens';
import type { ForwardedMethod } from './forwarded-methods';
import type { ForwardOptions, Upstreams } from './upstream';
import { edgeErrorOf, type EdgeError } from './upstream-errors';

/** One route of the Agent Engine style API; the OpenAPI document lists exactly these. */
export interface IntegrationsRoute {
  method: 'GET' | 'POST';
  path: string;
  /** The forwarded method it maps onto. */
  forwardsTo: string;
}

/** The routes of `/api/v1`, checked against `openapi.json` by a test. */
export const integrationsRoutes: readonly IntegrationsRoute[] = [
  { method: 'GET', path: '/api/v1/integrations/connectors', forwardsTo: 'coffer.config.v1.ConfigService/ListConnectorDefinitions' },
  { method: 'POST', path: '/api/v1/integrations/connectors', forwardsTo: 'coffer.config.v1.ConfigService/CreateActor' },
];

/** A JSON answer of the API: its HTTP status and body. */
export interface ApiAnswer {
  status: number;
  body: unknown;
}

const ACTOR_TYPES = ['unspecified', 'source', 'destination'] as const;

function invalid(field: string, reason: string): EdgeError {
  return { code: grpc.status.INVALID_ARGUMENT, message: `${field} ${reason}`, details: [{ field, reason }] };
}

/** An error of the API, as `{ code, message, details }`. */
export class ApiError extends Error {
  constructor(readonly error: EdgeError) {
    super(error.message);
    this.name = 'ApiError';
  }
}

function actorTypeOf(value: string | null | undefined): number {
  if (value === null || value === undefined || value === '') return 0;
  const i = ACTOR_TYPES.indexOf(value as (typeof ACTOR_TYPES)[number]);
  if (i <= 0) throw new ApiError(invalid('actor_type', 'must be source or destination'));
  return i;
}

function parseSpec(specJson: string): unknown {
  try {
    return JSON.parse(specJson);
  } catch {
    return null;
  }
}

/** What the API needs: the forwarded methods by path and the channels to the services. */
export interface IntegrationsDeps {
  methods: ReadonlyMap<string, ForwardedMethod>;
  upstreams: Upstreams;
}

/** Serves `/api/v1/integrations/connectors` by calling config as the caller. */
export function createIntegrationsApi(deps: IntegrationsDeps) {
  async function forward(path: string, init: Record<string, unknown>, options: ForwardOptions) {
    const m = deps.methods.get(path)!;
    const input = m.method.input as DescMessage;
    try {
      const bytes = await deps.upstreams.call(m.upstream, path, toBinary(input, create(input, init)), options);
      return fromBinary(m.method.output, bytes) as unknown as Record<string, unknown>;
    } catch (err) {
      throw new ApiError(edgeErrorOf(err));
    }
  }

  return {
    /** Answers one request whose path is an integrations route; `body` is the parsed JSON body of a POST. */
    async handle(method: string, url: URL, body: unknown, principal: Principal | undefined, options: ForwardOptions): Promise<ApiAnswer> {
      if (method === 'GET') {
        const pageSize = url.searchParams.get('page_size');
        const size = pageSize === null ? 0 : Number(pageSize);
        if (!Number.isInteger(size) || size < 0 || size > 500) throw new ApiError(invalid('page_size', 'must be an integer from 0 to 500'));
        const res = await forward(
          integrationsRoutes[0]!.forwardsTo,
          { actorType: actorTypeOf(url.searchParams.get('actor_type')), page: { pageSize: size, pageToken: url.searchParams.get('page_token') ?? '' } },
          options,
        );
        const definitions = res.definitions as Array<Record<string, unknown>>;
        return {
          status: 200,
          body: {
            connectors: definitions.map((d) => ({
              id: d.definitionId,
              name: d.name,
              actor_type: ACTOR_TYPES[d.actorType as number] ?? 'unspecified',
              connector: d.connector,
              version: String(d.version),
              spec: parseSpec(d.specJson as string),
            })),
            next_page_token: res.nextPageToken,
          },
        };
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(invalid('body', 'must be a JSON object'));
      const b = body as Record<string, unknown>;
      for (const field of ['definition_id', 'workspace_id', 'name', 'request_id'] as const) {
        if (b[field] !== undefined && typeof b[field] !== 'string') throw new ApiError(invalid(field, 'must be a string'));
      }
      if (typeof b.definition_id !== 'string' || b.definition_id === '') throw new ApiError(invalid('definition_id', 'is required'));
      if (b.configuration === null || typeof b.configuration !== 'object' || Array.isArray(b.configuration)) {
        throw new ApiError(invalid('configuration', 'must be a JSON object'));
      }
      // A scoped or widget token names its one workspace; an application token must say which.
      const workspaceId = (b.workspace_id as string | undefined) || principal?.workspaceId || '';
      const res = await forward(
        integrationsRoutes[1]!.forwardsTo,
        {
          workspaceId,
          definitionId: b.definition_id,
          name: (b.name as string | undefined) ?? '',
          configJson: JSON.stringify(b.configuration),
          ...(typeof b.request_id === 'string' && b.request_id !== '' && { requestId: b.request_id }),
        },
        options,
      );
      const actor = res.actor as Record<string, unknown>;
      return {
        status: 201,
        body: {
          id: actor.actorId,
          workspace_id: actor.workspaceId,
          definition_id: actor.definitionId,
          actor_type: ACTOR_TYPES[actor.actorType as number] ?? 'unspecified',
          name: actor.name,
          configuration: parseSpec(actor.configJson as string),
          version: String(actor.version),
        },
      };
    },
  };
}

/** The JSON error body of the API. */
export function apiErrorBody(error: EdgeError, codeName: string): { code: string; message: string; details?: ErrorDetail[] } {
  return { code: codeName, message: error.message, ...(error.details.length > 0 && { details: error.details }) };
}
