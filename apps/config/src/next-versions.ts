import { isSecretReference, type PlannedSecretWrite, type SplitResult } from '@coffer/secret-json';

/**
 * Moves each planned write of a stored base past the highest version secrets holds of it, and the
 * reference to it in the partial config along. `split` plans "stored version + 1", but a write that
 * was lost before config recorded it (a crash, a change that lost a race) may have taken that
 * version already: secrets never reuses a version, so planning from its latest keeps the next write
 * possible. Bases absent from `latest` keep their planned version.
 */
export function atNextVersions(planned: SplitResult, latest: ReadonlyMap<string, number>): SplitResult {
  const moved = new Map<string, string>();
  const writes = planned.writes.map((w): PlannedSecretWrite => {
    const held = latest.get(w.baseCoordinate) ?? 0;
    if (held < w.version) return w;
    const version = held + 1;
    const coordinate = `${w.baseCoordinate}_v${version}`;
    moved.set(w.coordinate, coordinate);
    return { ...w, version, coordinate };
  });
  if (moved.size === 0) return planned;
  return { ...planned, writes, partialConfig: renameReferences(planned.partialConfig, moved) };
}

/** A copy of a partial config with every `{"_secret": c}` whose c is a key of `renames` pointing at its new coordinate. */
function renameReferences(node: unknown, renames: ReadonlyMap<string, string>): unknown {
  if (isSecretReference(node)) return { _secret: renames.get(node._secret) ?? node._secret };
  if (Array.isArray(node)) return node.map((v) => renameReferences(v, renames));
  if (node !== null && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, renameReferences(v, renames)]));
  return node;
}
