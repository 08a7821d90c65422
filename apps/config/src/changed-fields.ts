/** The most paths one event lists; more changes are summarised by the parent `$`. */
export const MAX_CHANGED_FIELDS = 100;
const MAX_PATH_CHARS = 300;

const isSecretReference = (v: unknown): boolean =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as { _secret?: unknown })._secret === 'string';

function child(path: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

const bounded = (p: string): string => (p.length > MAX_PATH_CHARS ? `${p.slice(0, MAX_PATH_CHARS - 1)}…` : p);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !isSecretReference(v);
}

/**
 * JSON paths of the fields whose value differs between two partial configs (all set fields when
 * `before` is undefined). A secret is one field: a new stored version is a change, and only its path
 * is named, never its coordinate. Arrays count as one field. The list is bounded; past the bound it
 * ends with `$` (meaning: more changed).
 */
export function changedFields(before: unknown, after: unknown): string[] {
  const out: string[] = [];
  const pending: Array<[string, unknown, unknown]> = [['$', before, after]];
  while (pending.length > 0) {
    const [path, a, b] = pending.shift()!;
    if (isPlainObject(a) || isPlainObject(b)) {
      const left = isPlainObject(a) ? a : {};
      const right = isPlainObject(b) ? b : {};
      if (!isPlainObject(a) && a !== undefined && path !== '$') out.push(path);
      else if (!isPlainObject(b) && b !== undefined && path !== '$') out.push(path);
      for (const key of new Set([...Object.keys(left), ...Object.keys(right)])) pending.push([child(path, key), left[key], right[key]]);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(path);
    }
    if (out.length >= MAX_CHANGED_FIELDS) return [...out.slice(0, MAX_CHANGED_FIELDS - 1).map(bounded), '$'];
  }
  return out.map(bounded);
}
