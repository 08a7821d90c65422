export {
  TOKEN_TYPES,
  isPermission,
  isServiceRole,
  isUserRole,
  permissions,
  serviceRoles,
  tokenKindOf,
  userRoles,
  userTokenKinds,
  type Permission,
  type Principal,
  type Role,
  type ServiceRole,
  type TokenKind,
  type UserRole,
} from './claims';
export { hasPermission, rolePermissions } from './permissions';
export { createRevocationList, type RevocationCheck, type RevocationList } from './revocation-list';
export { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from './token-verifier';
