import { importJWK, SignJWT, type JWK, type CryptoKey } from 'jose';
import { CofferError } from '@coffer/contracts';

/** The active signing key: its private key for signing and its public JWK for the JWKS. */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey | Uint8Array;
  publicJwk: JWK;
}

/** Imports an Ed25519 private JWK (`{"kty":"OKP","crv":"Ed25519","d":…,"x":…,"kid":…}`). */
export async function importSigningKey(jwkText: string): Promise<SigningKey> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(jwkText) as JWK;
  } catch {
    throw new CofferError('invalid_argument', 'AUTH_SIGNING_KEY is not valid JSON');
  }
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.d || !jwk.x) {
    throw new CofferError('invalid_argument', 'AUTH_SIGNING_KEY must be an Ed25519 private JWK (kty OKP, crv Ed25519, d, x)');
  }
  if (!jwk.kid) throw new CofferError('invalid_argument', 'AUTH_SIGNING_KEY needs a kid');
  const privateKey = await importJWK(jwk, 'EdDSA');
  const { kty, crv, x, kid } = jwk;
  return { kid, privateKey, publicJwk: { kty, crv, x, kid, alg: 'EdDSA', use: 'sig' } };
}

/** The claims of a service token, signed with the active key. */
export interface ServiceTokenClaims {
  issuer: string;
  subject: string;
  audience: string;
  role: string;
  tokenId: string;
  issuedAt: Date;
  ttlSeconds: number;
}

/** Signs a service token: EdDSA, `typ: coffer-service+jwt`, the key's kid. */
export async function signServiceToken(key: SigningKey, claims: ServiceTokenClaims): Promise<string> {
  const iat = Math.floor(claims.issuedAt.getTime() / 1000);
  return new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'coffer-service+jwt' })
    .setIssuer(claims.issuer)
    .setSubject(claims.subject)
    .setAudience(claims.audience)
    .setJti(claims.tokenId)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + claims.ttlSeconds)
    .sign(key.privateKey);
}
