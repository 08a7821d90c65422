import { authV1, CofferError } from '@coffer/contracts';
import { defineService, type CallContext, type ServiceRegistration } from '@coffer/rpc';
import type { Principal } from '@coffer/tokens';
import type { AuthService } from './auth.service';
import type { SigningKeyRing } from './signing-keys';

function caller(ctx: CallContext): Principal {
  if (!ctx.principal) throw new CofferError('unauthenticated', 'missing bearer token');
  return ctx.principal;
}

const bearer = <T extends { accessToken: string; expiresIn: number }>(t: T) => ({ ...t, tokenType: 'Bearer' });

/**
 * gRPC handlers of coffer.auth.v1.AuthService. Credential exchanges and the JWKS are public (the
 * credentials are the request); everything else declares its permission and the kinds of token it takes.
 */
export function authGrpcService(service: AuthService, ring: SigningKeyRing): ServiceRegistration {
  return defineService(authV1.AuthServiceService, 'coffer.auth.v1.AuthService', {
    issueServiceToken: {
      permission: 'public',
      handler: async (req) => bearer(await service.issueServiceToken(req.clientId, req.clientSecret, req.audience)),
    },
    getJwks: {
      permission: 'public',
      handler: async () => ({ jwksJson: JSON.stringify(await ring.jwks()) }),
    },
    createOrganization: {
      permission: 'auth.admin',
      tokenKinds: ['service'],
      handler: async (req) => ({ organization: await service.createOrganization(req.name, req.requestId) }),
    },
    createApplication: {
      permission: 'auth.applications',
      tokenKinds: ['service', 'application'],
      handler: async (req, ctx) => service.createApplication(caller(ctx), req),
    },
    rotateApplicationSecret: {
      permission: 'auth.applications',
      tokenKinds: ['service', 'application'],
      handler: async (req, ctx) => service.rotateApplicationSecret(caller(ctx), req.clientId),
    },
    disableApplication: {
      permission: 'auth.applications',
      tokenKinds: ['service', 'application'],
      handler: async (req, ctx) => {
        await service.disableApplication(caller(ctx), req.clientId);
        return {};
      },
    },
    issueApplicationToken: {
      permission: 'public',
      handler: async (req) => bearer(await service.issueApplicationToken(req.clientId, req.clientSecret)),
    },
    issueScopedToken: {
      permission: 'auth.issue_scoped',
      tokenKinds: ['application'],
      handler: async (req, ctx) => bearer(await service.issueScopedToken(caller(ctx), req)),
    },
    issueWidgetToken: {
      permission: 'auth.issue_widget',
      tokenKinds: ['scoped'],
      handler: async (req, ctx) => bearer(await service.issueWidgetToken(caller(ctx), req.allowedOrigin)),
    },
    revokeToken: {
      permission: 'auth.revoke',
      tokenKinds: ['service', 'application'],
      handler: async (req, ctx) => ({ tokenId: await service.revokeToken(caller(ctx), req) }),
    },
    revokeServiceIdentity: {
      permission: 'auth.admin',
      tokenKinds: ['service'],
      handler: async (req) => {
        await service.revokeServiceIdentity(req.clientId);
        return {};
      },
    },
    rotateSigningKey: {
      permission: 'auth.admin',
      tokenKinds: ['service'],
      handler: async () => {
        const r = await ring.rotate();
        return { kid: r.kid, activateAt: r.activateAt.toISOString(), previousKid: r.previousKid, previousRetireAt: r.previousRetireAt.toISOString() };
      },
    },
    getClientLockout: {
      permission: 'auth.applications',
      tokenKinds: ['service', 'application'],
      handler: async (req, ctx) => service.clientLockout(caller(ctx), req.clientId),
    },
  });
}
