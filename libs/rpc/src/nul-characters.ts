/** Proto messages nest far less than this; deeper values are not walked. */
const MAX_DEPTH = 32;

const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * @internal The proto path (`secrets[0].base_coordinate`) of the first string field of a request that
 * holds a NUL character, which Postgres stores in no text or jsonb column; undefined when none does.
 */
export function nulCharacterField(request: unknown): string | undefined {
  const walk = (value: unknown, path: string, depth: number): string | undefined => {
    if (typeof value === 'string') return value.includes('\u0000') ? path : undefined;
    if (depth > MAX_DEPTH || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return undefined;
    const entries: [string, unknown][] = Array.isArray(value)
      ? value.map((v, i) => [`${path}[${i}]`, v])
      : Object.entries(value).map(([k, v]) => [path ? `${path}.${snakeCase(k)}` : snakeCase(k), v]);
    for (const [at, v] of entries) {
      const found = walk(v, at, depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return walk(request, '', 0);
}
