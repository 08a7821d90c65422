import { CofferError, isCofferError } from '@coffer/contracts';
import type { Logger, Redactor } from '@coffer/telemetry';
import { ConnectorError, parseObject } from '../connectors/connector';
import type { EgressPolicy } from '../connectors/egress-policy';
import { InvalidGrantError, TokenEndpointError, exchangeAuthorizationCode, type OAuthDeclaration } from './token-endpoint';

/** What the code exchange needs from secrets. */
export interface CodeExchangePorts {
  hydrate(workspaceId: string, partialConfigJson: string, reason: string, ownerId: string): Promise<string>;
  /** Writes each value as the next version of its base (refused unless the base is at `expectedVersion`; 0: a new base), for `ownerId`, under one write id. */
  writeNewSecrets(workspaceId: string, ownerId: string, writeId: string, writes: { baseCoordinate: string; expectedVersion: number; value: string }[]): Promise<string[]>;
}

export interface CodeExchangeDeps {
  ports: CodeExchangePorts;
  egress: EgressPolicy;
  redactor: Redactor;
  logger: Logger;
  clock: () => Date;
}

/** An ExchangeAuthorizationCode request, as config sends it. */
export interface CodeExchangeInput {
  workspaceId: string;
  actorId: string;
  oauthJson: string;
  partialConfigJson: string;
  code: string;
  redirectUri: string;
  accessTokenBase: string;
  refreshTokenBase: string;
  tokenExpiryDateBase: string;
  writeId: string;
  accessTokenExpectedVersion: number;
  refreshTokenExpectedVersion: number;
  tokenExpiryDateExpectedVersion: number;
}

const invalid = (field: string, reason: string) => new CofferError('invalid_argument', `${field} ${reason}`, [{ field, reason }]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INPUTS = ['client_id', 'client_secret', 'code_verifier'] as const;

function declaration(json: string): OAuthDeclaration {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw invalid('oauth_json', 'is not valid JSON');
  }
  const d = parsed as Partial<OAuthDeclaration> | null;
  if (!d || typeof d !== 'object' || typeof d.token_endpoint !== 'string') throw invalid('oauth_json', 'must declare a token_endpoint');
  let url: URL;
  try {
    url = new URL(d.token_endpoint);
  } catch {
    throw invalid('oauth_json', 'must declare an http(s) token_endpoint');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('oauth_json', 'must declare an http(s) token_endpoint');
  return d as OAuthDeclaration;
}

/**
 * The server side of an OAuth 2.0 authorization code flow: hydrates the flow's client credentials and
 * PKCE verifier (owned by the actor the flow creates), sends the authorization_code grant to the
 * token endpoint through the egress policy, and writes the access token, the refresh token and the
 * expiry to secrets as the next versions of the bases config chose (version 1 of new ones). Every value is registered with the
 * redactor before it can reach a log line or an error; the answer names coordinates only.
 */
export function createCodeExchange(deps: CodeExchangeDeps) {
  const { ports, egress, redactor, logger, clock } = deps;

  return async function exchange(input: CodeExchangeInput, signal: AbortSignal): Promise<{ accessTokenCoordinate: string; refreshTokenCoordinate: string; tokenExpiryDateCoordinate: string }> {
    if (!UUID.test(input.actorId)) throw invalid('actor_id', 'must be a UUID');
    if (!UUID.test(input.workspaceId)) throw invalid('workspace_id', 'must be a UUID');
    if (!input.code) throw invalid('code', 'is required');
    if (input.code.length > 4096) throw invalid('code', 'must be at most 4096 characters');
    if (!input.redirectUri) throw invalid('redirect_uri', 'is required');
    if (!input.writeId) throw invalid('write_id', 'is required');
    const bases = { access_token: input.accessTokenBase, refresh_token: input.refreshTokenBase, token_expiry_date: input.tokenExpiryDateBase };
    const expected = { access_token: Number(input.accessTokenExpectedVersion), refresh_token: Number(input.refreshTokenExpectedVersion), token_expiry_date: Number(input.tokenExpiryDateExpectedVersion) };
    for (const [field, v] of Object.entries(expected)) {
      if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${field}_expected_version`, 'must be 0 or a positive version');
    }
    const mine = `_workspace_${input.workspaceId}_secret_`;
    for (const [field, base] of Object.entries(bases)) {
      if (!base || !base.includes(mine) || /_v\d+$/.test(base)) throw invalid(`${field}_base`, `must be a base coordinate of workspace ${input.workspaceId}`);
    }
    const oauth = declaration(input.oauthJson);
    let partial: Record<string, unknown>;
    try {
      partial = parseObject(input.partialConfigJson, 'partial_config_json');
    } catch {
      throw invalid('partial_config_json', 'must be a JSON object');
    }
    for (const f of INPUTS) {
      const ref = partial[f] as { _secret?: unknown } | undefined;
      if (!ref || typeof ref._secret !== 'string') throw invalid('partial_config_json', `must hold ${f} as a stored secret`);
    }
    const onlyInputs = Object.fromEntries(INPUTS.map((f) => [f, partial[f]]));
    const registered: string[] = [];
    const register = (v: unknown) => {
      if (typeof v !== 'string' || v === '') return;
      redactor.register(v);
      registered.push(v);
    };
    // The code is a credential for as long as it lives: never in a log line.
    register(input.code);
    register(encodeURIComponent(input.code));
    try {
      const config = parseObject(await ports.hydrate(input.workspaceId, JSON.stringify(onlyInputs), `oauth code exchange ${input.actorId}`, input.actorId), 'the hydrated config');
      for (const f of INPUTS) register(config[f]);
      let tokens;
      try {
        tokens = await exchangeAuthorizationCode(
          oauth,
          { clientId: String(config.client_id ?? ''), clientSecret: String(config.client_secret ?? '') },
          { code: input.code, redirectUri: input.redirectUri, codeVerifier: String(config.code_verifier ?? '') },
          { egress, signal, onDerived: register },
        );
      } catch (err) {
        if (err instanceof InvalidGrantError) throw new CofferError('failed_precondition', 'the provider refused the authorization code (invalid_grant)', [{ field: 'code', reason: 'invalid_grant' }]);
        if (err instanceof TokenEndpointError) throw new CofferError('unavailable', redactor.redact(err.message));
        // The egress policy refused the token endpoint (or could not resolve it): an operator's decision.
        if (err instanceof ConnectorError) throw new CofferError('failed_precondition', redactor.redact(err.message), [{ field: 'token_endpoint', reason: 'egress refused' }]);
        throw err;
      }
      register(tokens.accessToken);
      register(tokens.refreshToken);
      if (!tokens.refreshToken) throw new CofferError('failed_precondition', 'the provider issued no refresh token (does the definition ask for offline access?)', [{ field: 'scopes', reason: 'no refresh token' }]);
      const expiresAt = new Date(clock().getTime() + (tokens.expiresInSeconds ?? 3600) * 1000).toISOString();
      let written: string[];
      try {
        written = await ports.writeNewSecrets(input.workspaceId, input.actorId, input.writeId, [
          { baseCoordinate: bases.access_token, expectedVersion: expected.access_token, value: tokens.accessToken },
          { baseCoordinate: bases.refresh_token, expectedVersion: expected.refresh_token, value: tokens.refreshToken },
          { baseCoordinate: bases.token_expiry_date, expectedVersion: expected.token_expiry_date, value: expiresAt },
        ]);
      } catch (err) {
        logger.error({ err, actorId: input.actorId }, 'could not store the tokens of an authorization code exchange');
        throw isCofferError(err) ? new CofferError(err.code === 'version_conflict' ? 'failed_precondition' : 'unavailable', 'the tokens could not be stored; start the flow again') : err;
      }
      logger.info({ actorId: input.actorId, accessTokenCoordinate: written[0] }, 'OAuth authorization code exchanged; tokens stored');
      return { accessTokenCoordinate: written[0]!, refreshTokenCoordinate: written[1]!, tokenExpiryDateCoordinate: written[2]! };
    } finally {
      for (const v of registered) redactor.unregister(v);
    }
  };
}

/** The exchange, as composed by main.ts. */
export type CodeExchange = ReturnType<typeof createCodeExchange>;
