/** A data key wrapped by a key-encryption key (KEK) held by the KMS. */
export interface WrappedKey {
  /** Which KMS key wrapped it (provider-specific id). */
  kekId: string;
  kekVersion: number;
  wrapped: Buffer;
}

/** One version of the KEK, as the provider knows it. */
export interface KekVersion {
  version: number;
  /** `primary` wraps new data keys; `active` still unwraps; `retired` is destroyed or disabled. */
  state: 'primary' | 'active' | 'retired';
}

/**
 * The one interface every KMS provider implements (local, pkcs11, aws-kms, gcp-kms); only the
 * secrets service holds one. The KEK never leaves the provider: callers see wrapped data keys only.
 */
export interface KeyManagementService {
  readonly provider: string;
  /** The provider's id of the KEK (keyring id, token label, key ARN, key name). */
  readonly kekId: string;
  /** Wraps a data key under the primary KEK version; `context` is bound as additional authenticated data. */
  wrap(dataKey: Buffer, context: string): Promise<WrappedKey>;
  /** Unwraps a data key; fails if the KEK version is retired or the context differs. */
  unwrap(key: WrappedKey, context: string): Promise<Buffer>;
  /** The KEK version new data keys are wrapped under. */
  primaryVersion(): number;
  /** Creates a new KEK version inside the provider and makes it primary; returns its number. */
  createVersion(): Promise<number>;
  /** Destroys or disables a KEK version that is not primary; what it wrapped can't be unwrapped any more. */
  retireVersion(version: number): Promise<void>;
  /** Every KEK version the provider knows. */
  versions(): Promise<KekVersion[]>;
  /** Releases sessions and connections. */
  close(): Promise<void>;
  /** Re-reads KEK versions created or retired by another process (a rotation run elsewhere). */
  refresh?(): Promise<void>;
}

/** Context-bound wrapping inputs must be 32-byte AES-256 data keys. */
export const DATA_KEY_BYTES = 32;
