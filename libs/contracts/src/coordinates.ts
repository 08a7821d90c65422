import { CofferError } from './errors';

/** The workspace that check/discover secrets belong to; they expire. */
export const EPHEMERAL_WORKSPACE_ID = '00000000-0000-0000-0000-000000000000';

/** A parsed secret coordinate `<prefix>_workspace_<ws>_secret_<uuid>_v<version>`. */
export interface SecretCoordinate {
  prefix: string;
  workspaceId: string;
  secretId: string;
  version: number;
  /** Everything before `_v<version>`. */
  base: string;
  /** The full coordinate. */
  full: string;
}

/** Builds the base coordinate (without version) of a secret. */
export function baseCoordinate(prefix: string, workspaceId: string, secretId: string): string {
  return `${prefix}_workspace_${workspaceId}_secret_${secretId}`;
}

/** Builds a full coordinate from a base and a version. */
export function versionedCoordinate(base: string, version: number): string {
  return `${base}_v${version}`;
}

/** The most characters of a coordinate: a prefix, two UUIDs and a version fit many times over. */
export const MAX_COORDINATE_CHARS = 300;

/** Parses a full coordinate: starts with `<prefix>_`, split at the last `_v`, version a positive integer. */
export function parseCoordinate(prefix: string, coordinate: string): SecretCoordinate {
  const bad = (why: string) =>
    new CofferError('invalid_argument', `not a secret coordinate: ${why}`, [{ field: 'coordinate', reason: why }]);
  // Far longer than any coordinate issued; checked first so a huge one costs nothing and is never echoed.
  if (coordinate.length > MAX_COORDINATE_CHARS) throw bad(`is longer than ${MAX_COORDINATE_CHARS} characters`);
  if (!coordinate.startsWith(`${prefix}_workspace_`)) throw bad(`must start with "${prefix}_workspace_"`);
  const at = coordinate.lastIndexOf('_v');
  if (at < 0) throw bad('no "_v<version>" suffix');
  const versionText = coordinate.slice(at + 2);
  if (!/^[1-9][0-9]*$/.test(versionText)) throw bad('version must be a positive integer');
  const base = coordinate.slice(0, at);
  const rest = base.slice(`${prefix}_workspace_`.length);
  const sep = rest.indexOf('_secret_');
  if (sep < 0) throw bad('no "_secret_" part');
  const workspaceId = rest.slice(0, sep);
  const secretId = rest.slice(sep + '_secret_'.length);
  if (!workspaceId || !secretId) throw bad('empty workspace or secret id');
  return { prefix, workspaceId, secretId, version: Number(versionText), base, full: coordinate };
}

/** Parses a base coordinate (no version). */
export function parseBaseCoordinate(prefix: string, base: string): Omit<SecretCoordinate, 'version' | 'full'> {
  const { version: _v, full: _f, ...rest } = parseCoordinate(prefix, `${base}_v1`);
  return rest;
}
