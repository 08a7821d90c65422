/** A data key wrapped by a key-encryption key (KEK) held by the KMS. */
export interface WrappedKey {
  /** Which KMS key wrapped it (provider-specific id). */
  kekId: string;
  kekVersion: number;
  wrapped: Buffer;
}

/** The one interface every KMS provider implements; only the secrets service holds one. */
export interface KeyManagementService {
  readonly provider: string;
  /** Wraps a fresh data key under the current primary KEK version. */
  wrap(dataKey: Buffer, context: string): Promise<WrappedKey>;
  /** Unwraps a data key; fails if the KEK version is gone or the context differs. */
  unwrap(key: WrappedKey, context: string): Promise<Buffer>;
  /** The KEK version new data keys are wrapped under. */
  primaryVersion(): number;
}
