import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CofferError, configV1 } from '@coffer/contracts';
import { createTokenVerifier, TOKEN_TYPES } from '@coffer/tokens';
import type { CallContext } from './call-context';
import { defineService } from './define-service';
import { createGrpcServer, type GrpcServer } from './grpc-server';
import { captureLogger, createTestIssuer, ISSUER, rawUnary, type TestIssuer } from '../test/fixtures';

const SERVICE = 'coffer.config.v1.ConfigService';
const ORIGIN = 'https://app.example.com';

describe('the interceptor checks the kind of token and a widget token’s origin before any handler runs', () => {
  let issuer: TestIssuer;
  let server: GrpcServer;
  let client: grpc.Client;
  const handled: string[] = [];

  beforeAll(async () => {
    issuer = await createTestIssuer();
    const notHere = async (): Promise<never> => {
      throw new CofferError('failed_precondition', 'not part of this fixture');
    };
    const handlers = Object.fromEntries(Object.keys(configV1.ConfigServiceService).map((k) => [k, { permission: 'config.read', handler: notHere }]));
    const registration = defineService(configV1.ConfigServiceService, SERVICE, {
      ...handlers,
      getWorkspace: {
        permission: 'config.read',
        handler: async (_req: unknown, ctx: CallContext) => {
          handled.push(`getWorkspace:${ctx.principal?.kind}`);
          return { workspace: { workspaceId: ctx.principal?.workspaceId ?? '', name: ctx.principal?.origin ?? '', version: 1, organizationId: '', externalUserId: '' } };
        },
      },
      listWorkspaces: {
        permission: 'config.read',
        tokenKinds: ['application'],
        handler: async () => {
          handled.push('listWorkspaces');
          return { workspaces: [], nextPageToken: '' };
        },
      },
    } as never);
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: 'config', fetchJwks: async () => issuer.jwks, acceptedKinds: ['service', 'application', 'scoped', 'widget'] });
    server = createGrpcServer({ services: [registration], verifier, logger: captureLogger().logger });
    const port = await server.listen('127.0.0.1:0');
    client = new configV1.ConfigServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await server?.shutdown();
  });

  const user = { aud: ['auth', 'config'], org: 'org-1', azp: 'app-1' };
  const scopedClaims = { ...user, sub: 'org-1/u1', ws: 'ws-a', role: 'workspace_reader' };
  function md(token: string, origins: string[] = []): grpc.Metadata {
    const m = new grpc.Metadata();
    m.set('authorization', `Bearer ${token}`);
    for (const o of origins) m.add('origin', o);
    return m;
  }

  it('refuses a scoped token where only application tokens are taken, without running the handler', async () => {
    const scoped = await issuer.signClaims(TOKEN_TYPES.scoped, scopedClaims);
    const r = await rawUnary(client, 'listWorkspaces', {}, md(scoped));
    expect(r).toMatchObject({ status: grpc.status.PERMISSION_DENIED, message: 'this method takes application tokens, not scoped tokens' });
    const app = await issuer.signClaims(TOKEN_TYPES.application, { ...user, sub: 'app-1', role: 'org_admin' });
    expect((await rawUnary(client, 'listWorkspaces', {}, md(app))).status).toBe(grpc.status.OK);
    expect(handled).toEqual(['listWorkspaces']);
  });

  it('takes a widget token only from the one origin it is bound to', async () => {
    const widget = await issuer.signClaims(TOKEN_TYPES.widget, { ...scopedClaims, origin: ORIGIN, pjti: 'scoped-jti' });
    const okCall = await rawUnary<unknown, configV1.GetWorkspaceResponse>(client, 'getWorkspace', {}, md(widget, [ORIGIN]));
    expect(okCall.status).toBe(grpc.status.OK);
    expect(okCall.res!.workspace).toMatchObject({ workspaceId: 'ws-a', name: ORIGIN });
    for (const origins of [[], ['https://evil.example.com'], [ORIGIN, 'https://evil.example.com'], ['https://app.example.com.evil.example.com']]) {
      const r = await rawUnary(client, 'getWorkspace', {}, md(widget, origins));
      expect(r, JSON.stringify(origins)).toMatchObject({ status: grpc.status.PERMISSION_DENIED, message: 'widget token used from an origin it is not bound to' });
    }
    // Scoped tokens are not bound to an origin.
    const scoped = await issuer.signClaims(TOKEN_TYPES.scoped, scopedClaims);
    expect((await rawUnary(client, 'getWorkspace', {}, md(scoped, ['https://anywhere.example.com']))).status).toBe(grpc.status.OK);
  });

  it('refuses to define tokenKinds on a public method or as an empty list', () => {
    const base = Object.fromEntries(Object.keys(configV1.ConfigServiceService).map((k) => [k, { permission: 'config.read', handler: async () => ({}) }]));
    expect(() => defineService(configV1.ConfigServiceService, SERVICE, { ...base, getWorkspace: { permission: 'public', tokenKinds: ['service'], handler: async () => ({}) } } as never)).toThrow(/tokenKinds/);
    expect(() => defineService(configV1.ConfigServiceService, SERVICE, { ...base, getWorkspace: { permission: 'config.read', tokenKinds: [], handler: async () => ({}) } } as never)).toThrow(/tokenKinds/);
  });
});
