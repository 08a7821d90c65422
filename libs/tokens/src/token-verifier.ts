import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWK,
  type JWTHeaderParameters,
  type FlattenedJWSInput,
} from 'jose';
import { metrics } from '@opentelemetry/api';
import { CofferError, isCofferError } from '@coffer/contracts';
import { isServiceRole, isUserRole, tokenKindOf, type Principal, type TokenKind } from './claims';
import type { RevocationCheck } from './revocation-list';

/** Verifies bearer tokens locally; every failure is `CofferError('unauthenticated')`. */
export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
  /** Whether an identity established otherwise (a client certificate) has been revoked; throws `unavailable` while that cannot be known. */
  isRevoked?(principal: Pick<Principal, 'tokenId' | 'subject' | 'applicationId' | 'issuedAt'>): boolean;
}

/** Options of {@link createTokenVerifier}. */
export interface TokenVerifierOptions {
  /** Expected `iss`, e.g. `coffer-auth`. */
  issuer: string;
  /** Expected `aud`: the name of the service doing the verifying, e.g. `secrets`. */
  audience: string;
  /** Loads auth's public JWKS (e.g. `jwksFromAuth(address)`); called rarely, never per request. */
  fetchJwks: () => Promise<{ keys: JWK[] }>;
  /** How long a fetched key set is used before it is refetched; default 5 minutes. */
  cacheTtlMs?: number;
  /** Allowed clock skew for `exp`, `nbf` and `iat`; default 30 seconds. */
  clockToleranceSec?: number;
  /** Accepted kinds of token (their `typ` headers); default `['service']`. */
  acceptedKinds?: readonly TokenKind[];
  /**
   * Revoked tokens and identities, kept current from auth's events; checked after the signature. When
   * it is not current (`assertCurrent` throws `unavailable`), the verifier answers that instead of
   * accepting a token it cannot check.
   */
  revocations?: RevocationCheck;
  /** Minimum gap between two JWKS fetches (unknown kid, expired cache); default 10 seconds. */
  minRefetchIntervalMs?: number;
  /** Current time; tests pass a fixed clock. Default `() => new Date()`. */
  clock?: () => Date;
  /**
   * Tokens whose signature and claims were verified, kept (with the key set that verified them) so a
   * caller's next call with the same token skips the signature check; default 5,000, 0 for none.
   * Expiry and revocation are checked on every call all the same.
   */
  verifiedCacheEntries?: number;
}

const DEFAULT_CACHE_TTL_MS = 5 * 60_000;
const DEFAULT_MIN_REFETCH_MS = 10_000;
const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
const DEFAULT_VERIFIED_CACHE_ENTRIES = 5_000;
// Headers that let a token name its own verification key: honouring any of them lets an attacker
// sign with a key of their choosing (RFC 8725 §3.10), so a token carrying one is refused outright.
const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;
// Bounds the work spent on garbage input before any parsing.
const MAX_TOKEN_LENGTH = 8192;

function invalid(reason: string, cause?: unknown): CofferError {
  const err = new CofferError('unauthenticated', `invalid token: ${reason}`);
  if (cause !== undefined) Object.defineProperty(err, 'cause', { value: cause, enumerable: false });
  return err;
}

function stringClaim(payload: Record<string, unknown>, name: string): string {
  const value = payload[name];
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${name} claim check failed`);
  return value;
}

// jose's messages never contain the token, but we still map to our own short reasons so the
// text a caller sees is stable and ours.
function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    return err.reason === 'missing' ? `missing ${err.claim} claim` : `${err.claim} claim check failed`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown signing key';
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'ambiguous signing key';
  if (err instanceof errors.JWKSInvalid || err instanceof errors.JWKInvalid) return 'unusable signing key';
  if (err instanceof errors.JOSENotSupported) return 'unsupported token';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed';
  return 'verification failed';
}

interface KeyCache {
  keySet: ReturnType<typeof createLocalJWKSet>;
  fetchedAt: number;
}

/**
 * Creates a verifier: EdDSA only, `iss`, `aud`, `typ` (one of the accepted kinds), `exp`/`nbf`/`iat` with a
 * small skew, `sub`/`jti`/`role` and each kind's own claims present, not revoked; keys come from a cached JWKS, refetched (rate-limited) on an unknown kid.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const cacheTtlMs = options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
  const minRefetchMs = options.minRefetchIntervalMs ?? DEFAULT_MIN_REFETCH_MS;
  const tolerance = options.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC;
  const acceptedKinds = new Set<TokenKind>(options.acceptedKinds ?? ['service']);
  const clock = options.clock ?? (() => new Date());

  let cache: KeyCache | undefined;
  // Verified tokens by their exact text; an entry counts only under the key set that verified it, so
  // refetched keys (a retired or removed key) take effect for cached tokens too.
  const verifiedCacheEntries = options.verifiedCacheEntries ?? DEFAULT_VERIFIED_CACHE_ENTRIES;
  const verified = new Map<string, { principal: Principal; keys: KeyCache }>();
  let lastAttemptAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;

  function refresh(): Promise<void> {
    inflight ??= (async () => {
      lastAttemptAt = clock().getTime();
      try {
        const jwks = await options.fetchJwks();
        cache = { keySet: createLocalJWKSet({ keys: jwks.keys }), fetchedAt: clock().getTime() };
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  }

  function mayRefetch(now: number): boolean {
    return now - lastAttemptAt >= minRefetchMs;
  }

  async function keySet(): Promise<KeyCache['keySet']> {
    const now = clock().getTime();
    if (!cache || now - cache.fetchedAt >= cacheTtlMs) {
      if (inflight || mayRefetch(now)) {
        try {
          await refresh();
        } catch (err) {
          // A stale key set beats refusing every call while auth is briefly unreachable.
          if (!cache) throw invalid('signing keys unavailable', err);
        }
      }
      if (!cache) throw invalid('signing keys unavailable');
    }
    return cache.keySet;
  }

  async function resolveKey(header: JWTHeaderParameters, token: FlattenedJWSInput) {
    const current = await keySet();
    try {
      return await current(header, token);
    } catch (err) {
      // A kid we have not seen may be a freshly rotated key: refetch, but at most once per interval so
      // a flood of made-up kids cannot turn into a flood of JWKS requests.
      if (!(err instanceof errors.JWKSNoMatchingKey) || !mayRefetch(clock().getTime())) throw err;
      try {
        await refresh();
      } catch (fetchErr) {
        throw invalid('signing keys unavailable', fetchErr);
      }
      return cache!.keySet(header, token);
    }
  }

  function checkHeader(token: string): void {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      throw invalid('malformed', err);
    }
    for (const name of FORBIDDEN_HEADERS) {
      if (Object.hasOwn(header, name)) throw invalid(`forbidden "${name}" header`);
    }
    if (header.alg !== 'EdDSA') throw invalid('algorithm not allowed');
    if (typeof header.kid !== 'string' || header.kid.length === 0) throw invalid('missing kid');
    const kind = typeof header.typ === 'string' ? tokenKindOf(header.typ) : undefined;
    if (!kind || !acceptedKinds.has(kind)) throw invalid('unexpected typ');
  }

  // Created here, not at module load: the meter provider is registered at start-up.
  const verifications = metrics.getMeter('@coffer/tokens').createCounter('coffer.tokens.verifications', {
    description: 'bearer tokens verified, by outcome (valid, or the error code) and kind',
  });

  return {
    async verify(token: string): Promise<Principal> {
      try {
        const principal = await verifyToken(token);
        verifications.add(1, { outcome: 'valid', kind: principal.kind });
        return principal;
      } catch (err) {
        verifications.add(1, { outcome: isCofferError(err) ? err.code : 'error' });
        throw err;
      }
    },
    isRevoked(principal) {
      if (!options.revocations) return false;
      options.revocations.assertCurrent?.();
      return options.revocations.isRevoked(principal);
    },
  };

  /** The principal of a token verified before under the current, fresh key set, while it has not expired. */
  function fromCache(token: string): Principal | undefined {
    const hit = verified.get(token);
    if (!hit) return undefined;
    const now = clock().getTime();
    if (hit.keys !== cache || now - hit.keys.fetchedAt >= cacheTtlMs || now >= hit.principal.expiresAt.getTime() + tolerance * 1000) {
      verified.delete(token);
      return undefined;
    }
    return { ...hit.principal };
  }

  function remember(token: string, principal: Principal, keys: KeyCache | undefined): void {
    if (verifiedCacheEntries <= 0 || !keys) return;
    // Oldest first out: a Map iterates in insertion order.
    if (verified.size >= verifiedCacheEntries) verified.delete(verified.keys().next().value!);
    verified.set(token, { principal: { ...principal }, keys });
  }

  async function verifyToken(token: string): Promise<Principal> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw invalid('malformed');
    const known = fromCache(token);
    if (known) return notRevoked(known);
    checkHeader(token);
    let result: Awaited<ReturnType<typeof jwtVerify>>;
    try {
      result = await jwtVerify(token, resolveKey, {
        algorithms: ['EdDSA'],
        issuer: options.issuer,
        audience: options.audience,
        clockTolerance: tolerance,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
        currentDate: clock(),
      });
    } catch (err) {
      if (isCofferError(err)) throw err;
      throw invalid(reasonOf(err), err);
    }
    const { payload, protectedHeader } = result;
    const nowSec = clock().getTime() / 1000;
    // jose only checks iat against the clock when maxTokenAge is set; a token from the future is suspect.
    if (typeof payload.iat !== 'number' || payload.iat > nowSec + tolerance) throw invalid('iat claim check failed');
    if (typeof payload.exp !== 'number') throw invalid('missing exp claim');
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw invalid('sub claim check failed');
    if (typeof payload.jti !== 'string' || payload.jti.length === 0) throw invalid('jti claim check failed');
    const kind = tokenKindOf(protectedHeader.typ!)!;
    const principal: Principal = {
      subject: payload.sub,
      kind,
      tokenType: protectedHeader.typ!,
      role: payload.role as Principal['role'],
      tokenId: payload.jti,
      issuedAt: new Date(payload.iat * 1000),
      expiresAt: new Date(payload.exp * 1000),
    };
    if (kind === 'service') {
      if (!isServiceRole(payload.role)) throw invalid('role claim check failed');
    } else {
      // Every user token names its organization and the application it descends from.
      const org = stringClaim(payload, 'org');
      const azp = stringClaim(payload, 'azp');
      if (!isUserRole(payload.role) || (kind === 'application') !== (payload.role === 'org_admin')) throw invalid('role claim check failed');
      if (kind === 'application' && azp !== payload.sub) throw invalid('azp claim check failed');
      Object.assign(principal, { organizationId: org, applicationId: azp });
      if (kind !== 'application') {
        principal.workspaceId = stringClaim(payload, 'ws');
        if (typeof payload.ext === 'string' && payload.ext.length > 0) principal.externalUserId = payload.ext;
      }
      if (kind === 'widget') {
        principal.origin = stringClaim(payload, 'origin');
        // Without its parent's jti a widget token could not be revoked with its scoped token.
        principal.parentTokenId = stringClaim(payload, 'pjti');
      }
    }
    remember(token, principal, cache);
    return notRevoked(principal);
  }

  function notRevoked(principal: Principal): Principal {
    if (options.revocations) {
      options.revocations.assertCurrent?.();
      if (options.revocations.isRevoked(principal)) throw invalid('revoked');
    }
    return principal;
  }
}
