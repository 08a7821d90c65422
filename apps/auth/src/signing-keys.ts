import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { Kysely } from 'kysely';
import { CofferError, isCofferError, type MessagingNamespace } from '@coffer/contracts';
import type { EventStore } from '@coffer/event-store';
import { integrationEventMessage } from '@coffer/messaging';
import { TOKEN_TYPES, type TokenKind } from '@coffer/tokens';
import type { AuthDatabase } from './auth.database';

/** A signing key: its private key for signing and its public JWK for the JWKS. */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey | Uint8Array;
  publicJwk: JWK;
}

interface ParsedRoot {
  key: SigningKey;
  /** The raw private scalar: the root from which the key that seals rotated keys is derived. */
  seed: Buffer;
}

async function parseRootKey(jwkText: string): Promise<ParsedRoot> {
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
  return { key: { kid, privateKey, publicJwk: { kty, crv, x, kid, alg: 'EdDSA', use: 'sig' } }, seed: Buffer.from(jwk.d, 'base64url') };
}

/** Imports an Ed25519 private JWK (`{"kty":"OKP","crv":"Ed25519","d":…,"x":…,"kid":…}`). */
export async function importSigningKey(jwkText: string): Promise<SigningKey> {
  return (await parseRootKey(jwkText)).key;
}

/** The claims every token shares. */
export interface TokenClaims {
  kind: TokenKind;
  issuer: string;
  subject: string;
  audience: string | string[];
  role: string;
  tokenId: string;
  issuedAt: Date;
  /** Absolute expiry; wins over `ttlSeconds`. */
  expiresAt?: Date;
  ttlSeconds: number;
  /** Kind-specific claims: `org`, `azp`, `ws`, `ext`, `origin`. */
  extra?: Record<string, string>;
}

/** Signs a token of any kind: EdDSA, the kind's `typ`, the key's kid. */
export async function signToken(key: SigningKey, claims: TokenClaims): Promise<{ token: string; expiresAt: Date }> {
  const iat = Math.floor(claims.issuedAt.getTime() / 1000);
  const exp = claims.expiresAt ? Math.floor(claims.expiresAt.getTime() / 1000) : iat + claims.ttlSeconds;
  const token = await new SignJWT({ role: claims.role, ...claims.extra })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: TOKEN_TYPES[claims.kind] })
    .setIssuer(claims.issuer)
    .setSubject(claims.subject)
    .setAudience(claims.audience)
    .setJti(claims.tokenId)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(exp)
    .sign(key.privateKey);
  return { token, expiresAt: new Date(exp * 1000) };
}

/** The claims of a service token. */
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
  return (await signToken(key, { ...claims, kind: 'service' })).token;
}

/** What a rotation did: the new key, when it starts signing, and when the key it replaces leaves the JWKS. */
export interface Rotation {
  kid: string;
  activateAt: Date;
  previousKid: string;
  previousRetireAt: Date;
}

/** Options of {@link createSigningKeyRing}. */
export interface SigningKeyRingOptions {
  db: Kysely<AuthDatabase>;
  store: EventStore<AuthDatabase>;
  schema: string;
  namespace: MessagingNamespace;
  /** AUTH_SIGNING_KEY: the first signing key, and the root from which the key sealing later keys is derived. */
  rootKeyJwk: string;
  /** How long a key signs before a new one replaces it. */
  rotationIntervalMs: number;
  /** How long a replaced key stays in the JWKS after the new one starts signing: at least the longest token lifetime plus clock skew. */
  retireAfterMs: number;
  /**
   * How long a new key is published before it signs: longer than verifiers cache the JWKS (5 minutes),
   * so no service meets a token whose key it has not fetched yet. Default 6 minutes.
   */
  prepublishMs?: number;
  clock: () => Date;
  newId: () => string;
  /** How long a replica trusts its cached view of the ring before rereading it. Default 5 s. */
  cacheMs?: number;
}

interface KeyRow {
  kid: string;
  public_jwk: JWK;
  sealed_private_jwk: string;
  created_at: Date;
  /** When it starts signing; null on keys made before pre-publication (they signed at once). */
  activate_at: Date | null;
  retire_at: Date | null;
}

const activation = (r: KeyRow): number => (r.activate_at ?? r.created_at).getTime();

const RING_STREAM = 'signing-keys';

/**
 * The signing keys of auth, kept in its database (private keys sealed with AES-256-GCM under a key
 * derived from AUTH_SIGNING_KEY by HKDF, the kid as additional data). One key signs; a replaced key
 * stays in the JWKS until every token it signed has expired; rotation is an event on one stream, so
 * replicas racing to rotate make one new key, not two.
 */
export async function createSigningKeyRing(options: SigningKeyRingOptions) {
  const { db, store, schema, clock } = options;
  const root = await parseRootKey(options.rootKeyJwk);
  const sealingKey = Buffer.from(hkdfSync('sha256', root.seed, Buffer.from('coffer-auth'), Buffer.from('signing-key-seal-v1'), 32));
  const cacheMs = options.cacheMs ?? 5_000;
  const prepublishMs = options.prepublishMs ?? 6 * 60_000;

  function seal(kid: string, privateJwk: JWK): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', sealingKey, iv);
    cipher.setAAD(Buffer.from(kid));
    const ct = Buffer.concat([cipher.update(JSON.stringify(privateJwk)), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64');
  }

  async function unseal(row: KeyRow): Promise<SigningKey> {
    const raw = Buffer.from(row.sealed_private_jwk, 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', sealingKey, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(row.kid));
      decipher.setAuthTag(raw.subarray(12, 28));
      const jwk = JSON.parse(Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')) as JWK;
      return { kid: row.kid, privateKey: await importJWK(jwk, 'EdDSA'), publicJwk: row.public_jwk };
    } catch {
      throw new CofferError('failed_precondition', `signing key ${row.kid} cannot be unsealed: AUTH_SIGNING_KEY is not the key the ring was made with`);
    }
  }

  let cached: { at: number; active: SigningKey; published: JWK[] } | undefined;

  async function rows(): Promise<KeyRow[]> {
    return (await db.withSchema(schema).selectFrom('signing_keys').selectAll().orderBy('created_at', 'desc').orderBy('kid').execute()) as KeyRow[];
  }

  async function load(): Promise<{ active: SigningKey; published: JWK[] }> {
    const now = clock().getTime();
    if (cached && now - cached.at < cacheMs) return cached;
    const all = await rows();
    // The newest key whose time has come signs; a newer one may be published and waiting.
    const activeRow = all.filter((r) => activation(r) <= now).sort((a, b) => activation(b) - activation(a))[0];
    if (!activeRow) throw new CofferError('failed_precondition', 'no active signing key');
    const active = cached?.active.kid === activeRow.kid ? cached.active : await unseal(activeRow);
    const published = all.filter((r) => r.retire_at === null || r.retire_at.getTime() > now).map((r) => r.public_jwk);
    cached = { at: now, active, published };
    return cached;
  }

  async function addKey(key: SigningKey, privateJwk: JWK, previous: KeyRow | undefined, expectedVersion: number): Promise<{ activateAt: Date; retireAt: Date }> {
    const at = clock();
    const activateAt = new Date(at.getTime() + (previous ? prepublishMs : 0));
    const retireAt = new Date(activateAt.getTime() + options.retireAfterMs);
    await store.append(
      RING_STREAM,
      expectedVersion,
      [
        {
          type: 'SigningKeyRotated',
          data: { kid: key.kid, previousKid: previous?.kid ?? '', activateAt: activateAt.toISOString(), retireAt: previous ? retireAt.toISOString() : '', rotatedAt: at.toISOString() },
        },
      ],
      {
        project: async (trx) => {
          if (previous) await trx.withSchema(schema).updateTable('signing_keys').set({ retire_at: retireAt }).where('kid', '=', previous.kid).execute();
          await trx
            .withSchema(schema)
            .insertInto('signing_keys')
            .values({ kid: key.kid, public_jwk: JSON.stringify(key.publicJwk), sealed_private_jwk: seal(key.kid, privateJwk), created_at: at, activate_at: activateAt, retire_at: null })
            .execute();
        },
        outbox: (recorded) =>
          recorded.map((r) =>
            integrationEventMessage(
              options.namespace,
              'SigningKeyRotated',
              { kid: key.kid, previousKid: previous?.kid ?? '', activateAt: activateAt.toISOString(), retireAt: previous ? retireAt.toISOString() : '', occurredAt: at.toISOString() },
              { eventId: r.eventId, source: 'coffer/auth', subject: key.kid, time: r.recordedAt },
            ),
          ),
      },
    );
    cached = undefined;
    return { activateAt, retireAt };
  }

  /** Seeds the ring with AUTH_SIGNING_KEY when it is empty, and checks that the active key unseals. */
  async function init(): Promise<void> {
    const { currentVersion } = await store.readStream(RING_STREAM);
    if (currentVersion === 0) {
      const privateJwk = JSON.parse(options.rootKeyJwk) as JWK;
      try {
        await addKey(root.key, privateJwk, undefined, 0);
      } catch (err) {
        if (!(isCofferError(err) && err.code === 'version_conflict')) throw err;
      }
    }
    await load();
  }

  async function ringState(): Promise<{ version: number; newest: KeyRow | undefined }> {
    // The version first: a rotation that commits after it makes our append conflict, never a second key.
    const { currentVersion } = await store.readStream(RING_STREAM);
    return { version: currentVersion, newest: (await rows()).find((r) => r.retire_at === null) };
  }

  async function rotateFrom(version: number, previous: KeyRow | undefined): Promise<Rotation> {
    const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const kid = `k-${options.newId()}`;
    const privateJwk = { ...(await exportJWK(privateKey)), kid };
    const key: SigningKey = { kid, privateKey, publicJwk: { kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x, kid, alg: 'EdDSA', use: 'sig' } };
    const { activateAt, retireAt } = await addKey(key, privateJwk, previous, version);
    return { kid, activateAt, previousKid: previous?.kid ?? '', previousRetireAt: retireAt };
  }

  /**
   * Makes a new signing key: published now, signing after `prepublishMs`; the key it replaces signs
   * until then and stays published for `retireAfterMs` more.
   */
  async function rotate(): Promise<Rotation> {
    const { version, newest } = await ringState();
    return rotateFrom(version, newest);
  }

  /** Rotates when the active key is older than the interval; a replica that loses the race does nothing. */
  async function rotateIfDue(): Promise<boolean> {
    const { version, newest } = await ringState();
    if (newest && clock().getTime() - activation(newest) < options.rotationIntervalMs) return false;
    try {
      await rotateFrom(version, newest);
      return true;
    } catch (err) {
      if (isCofferError(err) && err.code === 'version_conflict') return false;
      throw err;
    }
  }

  return {
    init,
    rotate,
    rotateIfDue,
    /** The key to sign with now. */
    active: async () => (await load()).active,
    /** Public keys of the active key and of every replaced key not yet retired. */
    jwks: async () => ({ keys: (await load()).published }),
  };
}

/** The signing keys of auth, as composed by main.ts. */
export type SigningKeyRing = Awaited<ReturnType<typeof createSigningKeyRing>>;
