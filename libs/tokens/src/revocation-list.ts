import type { Principal } from './claims';

/**
 * What each service knows of revocations, fed from auth's events: single tokens by `jti` (kept until
 * they would have expired) and whole identities (a service identity or an application, by client id):
 * every token of that identity, or descending from that application, issued up to the revocation.
 */
export interface RevocationList {
  revokeToken(tokenId: string, expiresAt: Date): void;
  /** Refuses tokens whose `sub` or `azp` is `clientId` and that were issued at or before `at`. */
  revokeIdentity(clientId: string, at: Date): void;
  /** True when the token's `jti` or its parent's (`pjti`), its subject or its application is revoked. */
  isRevoked(principal: Pick<Principal, 'tokenId' | 'parentTokenId' | 'subject' | 'applicationId' | 'issuedAt'>): boolean;
  /** Forgets token revocations whose token has expired anyway. */
  prune(): void;
  /** Counts, for metrics and tests. */
  size(): { tokens: number; identities: number };
}

/** What a token verifier consults: the list, and whether it is current enough to be trusted. */
export interface RevocationCheck {
  isRevoked: RevocationList['isRevoked'];
  /**
   * Throws `CofferError('unavailable')` while the list cannot be trusted to hold every revocation (not
   * yet read up to date, or its source lost for too long); a verifier then refuses to decide.
   */
  assertCurrent?(): void;
}

/** An in-memory revocation list; `clock` decides when a revoked token's entry can go. */
export function createRevocationList(clock: () => Date = () => new Date()): RevocationList {
  const tokens = new Map<string, number>();
  const identities = new Map<string, number>();
  return {
    revokeToken(tokenId, expiresAt) {
      const exp = expiresAt.getTime();
      if (Number.isNaN(exp)) return;
      tokens.set(tokenId, Math.max(exp, tokens.get(tokenId) ?? 0));
    },
    revokeIdentity(clientId, at) {
      const t = at.getTime();
      if (Number.isNaN(t)) return;
      identities.set(clientId, Math.max(t, identities.get(clientId) ?? 0));
    },
    isRevoked(p) {
      if (tokens.has(p.tokenId)) return true;
      if (p.parentTokenId !== undefined && tokens.has(p.parentTokenId)) return true;
      // iat has one-second resolution: a token issued in the same second as the revocation is refused too.
      const issued = p.issuedAt.getTime();
      for (const id of [p.subject, p.applicationId]) {
        if (id === undefined) continue;
        const at = identities.get(id);
        if (at !== undefined && issued <= at) return true;
      }
      return false;
    },
    prune() {
      const now = clock().getTime();
      for (const [jti, exp] of tokens) if (exp < now) tokens.delete(jti);
    },
    size: () => ({ tokens: tokens.size, identities: identities.size }),
  };
}
