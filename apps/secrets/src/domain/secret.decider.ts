import { CofferError } from '@coffer/contracts';

/** A new version of a secret, already sealed; the plaintext never reaches the domain. */
export interface WriteSecretVersion {
  type: 'WriteSecretVersion';
  baseCoordinate: string;
  workspaceId: string;
  /** The version the coordinate was sealed for (latest + 1). */
  version: number;
  /** The caller's view of the latest version; 0 skips the check. */
  expectedVersion: number;
  ciphertext: string;
  dataKeyId: string;
  kekId: string;
  kekVersion: number;
  expiresAt: string | null;
  /** The actor or check/discover job the secret belongs to; null only for callers that name none. */
  ownerId: string | null;
  /** The workspace of the owner (for a check/discover secret: the workspace that ran the check). */
  ownerWorkspaceId: string;
  /** The writer's id of this write, if it gave one (see `DeleteSecrets` by write id). */
  writeId?: string;
  now: string;
}

/** Destroys the data keys of some versions (all active ones when `versions` is 'all'). */
export interface DestroySecretVersions {
  type: 'DestroySecretVersions';
  workspaceId: string;
  versions: number[] | 'all';
  reason: 'deleted' | 'expired';
  now: string;
}

/** Shreds the active versions whose expiry has passed. */
export interface ExpireSecretVersions {
  type: 'ExpireSecretVersions';
  workspaceId: string;
  versions: number[];
  now: string;
}

/** Records that a version's data key is now wrapped by another KEK version (the data key itself is unchanged). */
export interface RewrapDataKey {
  type: 'RewrapDataKey';
  workspaceId: string;
  version: number;
  fromKekVersion: number;
  toKekVersion: number;
  now: string;
}

export type SecretCommand = WriteSecretVersion | DestroySecretVersions | ExpireSecretVersions | RewrapDataKey;

export interface SecretVersionWrittenData {
  coordinate: string;
  baseCoordinate: string;
  version: number;
  workspaceId: string;
  ciphertext: string;
  dataKeyId: string;
  kekId: string;
  kekVersion: number;
  expiresAt: string | null;
  writtenAt: string;
  /** Absent in events recorded before secrets had owners. */
  ownerId?: string | null;
  ownerWorkspaceId?: string | null;
  /** The writer's id of the write that made this version; absent when it gave none. */
  writeId?: string;
}

export interface SecretVersionDestroyedData {
  coordinate: string;
  baseCoordinate: string;
  version: number;
  workspaceId: string;
  reason: 'deleted' | 'expired';
  destroyedAt: string;
}

export interface SecretExpiredData {
  coordinate: string;
  baseCoordinate: string;
  version: number;
  workspaceId: string;
  expiredAt: string;
}

/** No key material: which version, which KEK versions, when. */
export interface DataKeyRewrappedData {
  coordinate: string;
  baseCoordinate: string;
  version: number;
  workspaceId: string;
  fromKekVersion: number;
  toKekVersion: number;
  rewrappedAt: string;
}

export type SecretEvent =
  | { type: 'SecretVersionWritten'; data: SecretVersionWrittenData }
  | { type: 'SecretVersionDestroyed'; data: SecretVersionDestroyedData }
  | { type: 'SecretExpired'; data: SecretExpiredData }
  | { type: 'DataKeyRewrapped'; data: DataKeyRewrappedData };

export interface SecretState {
  baseCoordinate: string | null;
  workspaceId: string | null;
  latestVersion: number;
  /** version → active, destroyed or expired */
  versions: Map<number, 'active' | 'destroyed' | 'expired'>;
  /** version → the KEK version its data key is wrapped by */
  kekVersions: Map<number, number>;
  /** The owner the base is bound to (by its latest written version); null when written without one. */
  ownerId: string | null;
  ownerWorkspaceId: string | null;
}

/** The state of a secret that has never been written. */
export function initialState(): SecretState {
  return { baseCoordinate: null, workspaceId: null, latestVersion: 0, versions: new Map(), kekVersions: new Map(), ownerId: null, ownerWorkspaceId: null };
}

/** Applies one event to the state. */
export function evolve(state: SecretState, event: SecretEvent): SecretState {
  const versions = new Map(state.versions);
  const kekVersions = new Map(state.kekVersions);
  switch (event.type) {
    case 'SecretVersionWritten':
      versions.set(event.data.version, 'active');
      kekVersions.set(event.data.version, event.data.kekVersion);
      return {
        baseCoordinate: event.data.baseCoordinate,
        workspaceId: event.data.workspaceId,
        latestVersion: Math.max(state.latestVersion, event.data.version),
        versions,
        kekVersions,
        ownerId: event.data.ownerId ?? state.ownerId,
        ownerWorkspaceId: event.data.ownerWorkspaceId ?? state.ownerWorkspaceId,
      };
    case 'SecretVersionDestroyed':
      versions.set(event.data.version, 'destroyed');
      return { ...state, versions };
    case 'SecretExpired':
      versions.set(event.data.version, 'expired');
      return { ...state, versions };
    case 'DataKeyRewrapped':
      kekVersions.set(event.data.version, event.data.toKekVersion);
      return { ...state, kekVersions };
  }
}

/** Decides which events a command produces, or throws a CofferError. */
export function decide(command: SecretCommand, state: SecretState): SecretEvent[] {
  if (state.workspaceId !== null && state.workspaceId !== command.workspaceId) {
    throw new CofferError('not_found', 'no such secret in this workspace');
  }
  switch (command.type) {
    case 'WriteSecretVersion': {
      // A base is bound to its owner when first written: nobody else adds a version to it.
      if ((state.ownerId !== null && command.ownerId !== state.ownerId) || (state.ownerWorkspaceId !== null && command.ownerWorkspaceId !== state.ownerWorkspaceId)) {
        throw new CofferError('permission_denied', 'the secret belongs to another owner');
      }
      if (command.expectedVersion !== 0 && command.expectedVersion !== state.latestVersion) {
        throw new CofferError(
          'version_conflict',
          `secret is at version ${state.latestVersion}, expected ${command.expectedVersion}`,
        );
      }
      if (command.version !== state.latestVersion + 1) {
        throw new CofferError('version_conflict', `secret moved to version ${state.latestVersion} meanwhile`);
      }
      return [
        {
          type: 'SecretVersionWritten',
          data: {
            coordinate: `${command.baseCoordinate}_v${command.version}`,
            baseCoordinate: command.baseCoordinate,
            version: command.version,
            workspaceId: command.workspaceId,
            ciphertext: command.ciphertext,
            dataKeyId: command.dataKeyId,
            kekId: command.kekId,
            kekVersion: command.kekVersion,
            expiresAt: command.expiresAt,
            writtenAt: command.now,
            ownerId: command.ownerId,
            ownerWorkspaceId: command.ownerWorkspaceId,
            ...(command.writeId ? { writeId: command.writeId } : {}),
          },
        },
      ];
    }
    case 'DestroySecretVersions': {
      if (state.baseCoordinate === null) throw new CofferError('not_found', 'no such secret');
      const targets =
        command.versions === 'all'
          ? [...state.versions.entries()].filter(([, s]) => s === 'active').map(([v]) => v)
          : command.versions;
      for (const v of targets) {
        if (!state.versions.has(v)) throw new CofferError('not_found', `secret has no version ${v}`);
      }
      const base = state.baseCoordinate;
      return targets
        .filter((v) => state.versions.get(v) === 'active')
        .sort((a, b) => a - b)
        .map((version) => ({
          type: 'SecretVersionDestroyed' as const,
          data: {
            coordinate: `${base}_v${version}`,
            baseCoordinate: base,
            version,
            workspaceId: command.workspaceId,
            reason: command.reason,
            destroyedAt: command.now,
          },
        }));
    }
    case 'ExpireSecretVersions': {
      if (state.baseCoordinate === null) throw new CofferError('not_found', 'no such secret');
      const base = state.baseCoordinate;
      return [...new Set(command.versions)]
        .filter((v) => state.versions.get(v) === 'active')
        .sort((a, b) => a - b)
        .map((version) => ({
          type: 'SecretExpired' as const,
          data: { coordinate: `${base}_v${version}`, baseCoordinate: base, version, workspaceId: command.workspaceId, expiredAt: command.now },
        }));
    }
    case 'RewrapDataKey': {
      if (state.baseCoordinate === null) throw new CofferError('not_found', 'no such secret');
      if (state.versions.get(command.version) !== 'active') return [];
      if (state.kekVersions.get(command.version) !== command.fromKekVersion) return [];
      const base = state.baseCoordinate;
      return [
        {
          type: 'DataKeyRewrapped',
          data: {
            coordinate: `${base}_v${command.version}`,
            baseCoordinate: base,
            version: command.version,
            workspaceId: command.workspaceId,
            fromKekVersion: command.fromKekVersion,
            toKekVersion: command.toKekVersion,
            rewrappedAt: command.now,
          },
        },
      ];
    }
  }
}
