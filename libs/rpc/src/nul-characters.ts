/** Proto messages nest far less than this; deeper values are not walked. */
const MAX_DEPTH = 32;

const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * @internal The proto path (`secrets[0].base_coordinate`) of the first string field of a request that
 * holds a NUL character, which Postgres stores in no text or jsonb column; undefined when none does.
 */
export function nulCharacterField(request: unknown): string | undefined {
  // The path is built only for the field found (every call is walked; almost none has one).
  const walk = (value: unknown, depth: number): (string | number)[] | undefined => {
    if (typeof value === 'string') return value.includes('\u0000') ? [] : undefined;
    if (depth > MAX_DEPTH || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return undefined;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const found = walk(value[i], depth + 1);
        if (found) return [i, ...found];
      }
      return undefined;
    }
    for (const k in value) {
      if (!Object.hasOwn(value, k)) continue;
      const found = walk((value as Record<string, unknown>)[k], depth + 1);
      if (found) return [k, ...found];
    }
    return undefined;
  };
  const found = walk(request, 0);
  if (!found) return undefined;
  return found.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? snakeCase(part) : `.${snakeCase(part)}`)).join('');
}
