import { authV1 } from '@coffer/contracts';
import { defineService, type ServiceRegistration } from '@coffer/rpc';
import type { AuthService } from './auth.service';

/** gRPC handlers of coffer.auth.v1.AuthService; both are public (credentials are the request itself). */
export function authGrpcService(service: AuthService): ServiceRegistration {
  return defineService(authV1.AuthServiceService, 'coffer.auth.v1.AuthService', {
    issueServiceToken: {
      permission: 'public',
      handler: async (req) => {
        const { accessToken, expiresIn } = await service.issueServiceToken(req.clientId, req.clientSecret, req.audience);
        return { accessToken, expiresIn, tokenType: 'Bearer' };
      },
    },
    getJwks: {
      permission: 'public',
      handler: async () => ({ jwksJson: JSON.stringify(service.jwks()) }),
    },
  });
}
