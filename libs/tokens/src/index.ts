export {
  TOKEN_TYPES,
  isPermission,
  isServiceRole,
  permissions,
  serviceRoles,
  type Permission,
  type Principal,
  type ServiceRole,
} from './claims';
export { hasPermission, rolePermissions } from './permissions';
export { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from './token-verifier';
