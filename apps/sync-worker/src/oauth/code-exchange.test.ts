import { describe, expect, it } from 'vitest';
import { isCofferError } from '@coffer/contracts';
import { createLogger, createRedactor } from '@coffer/telemetry';
import { createEgressPolicy } from '../connectors/egress-policy';
import { createCodeExchange, type CodeExchangeInput } from './code-exchange';

const ws = '11111111-1111-4111-8111-111111111111';
const actor = '22222222-2222-4222-8222-222222222222';
const base = (n: number) => `coffer_workspace_${ws}_secret_00000000-0000-4000-8000-00000000000${n}`;
const valid: CodeExchangeInput = {
  workspaceId: ws,
  actorId: actor,
  oauthJson: JSON.stringify({ token_endpoint: 'https://provider.example.com/token' }),
  partialConfigJson: JSON.stringify({ client_id: { _secret: `${base(1)}_v1` }, client_secret: { _secret: `${base(2)}_v1` }, code_verifier: { _secret: `${base(3)}_v1` } }),
  code: 'code-canary',
  redirectUri: 'https://app.example.com/cb',
  accessTokenBase: base(4),
  refreshTokenBase: base(5),
  tokenExpiryDateBase: base(6),
  accessTokenExpectedVersion: 0,
  refreshTokenExpectedVersion: 0,
  tokenExpiryDateExpectedVersion: 0,
  writeId: 'flow-1',
};

describe('the code exchange refuses a malformed request before it hydrates anything', () => {
  const calls: string[] = [];
  const exchange = createCodeExchange({
    ports: {
      hydrate: async () => {
        calls.push('hydrate');
        return '{}';
      },
      writeNewSecrets: async () => {
        calls.push('write');
        return [];
      },
    },
    egress: createEgressPolicy(),
    redactor: createRedactor(),
    logger: createLogger({ service: 'test', level: 'silent' }),
    clock: () => new Date(),
  });

  const cases: [Partial<CodeExchangeInput>, string][] = [
    [{ actorId: 'nope' }, 'actor_id'],
    [{ code: '' }, 'code'],
    [{ redirectUri: '' }, 'redirect_uri'],
    [{ writeId: '' }, 'write_id'],
    [{ accessTokenBase: `${base(4)}_v1` }, 'access_token_base'],
    [{ refreshTokenBase: base(5).replace(ws, '33333333-3333-4333-8333-333333333333') }, 'refresh_token_base'],
    [{ tokenExpiryDateExpectedVersion: -1 }, 'token_expiry_date_expected_version'],
    [{ oauthJson: '{"token_endpoint":"ftp://x"}' }, 'oauth_json'],
    [{ partialConfigJson: JSON.stringify({ client_id: { _secret: `${base(1)}_v1` } }) }, 'partial_config_json'],
  ];
  it.each(cases)('%o is INVALID_ARGUMENT naming %s', async (change, field) => {
    const err = await exchange({ ...valid, ...change }, new AbortController().signal).catch((e: unknown) => e);
    expect(isCofferError(err) && err.code).toBe('invalid_argument');
    expect(isCofferError(err) && err.details?.map((d) => d.field)).toEqual([field]);
    expect(String((err as Error).message)).not.toContain('code-canary');
    expect(calls).toEqual([]);
  });
});
