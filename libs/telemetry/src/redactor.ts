/** Replaces registered secret values in text before it leaves the process (log lines, connector errors). */
export interface Redactor {
  /** Adds a value; values shorter than {@link MIN_REDACTED_LENGTH} are ignored. Counted: register twice, unregister twice. */
  register(value: string): void;
  /** Drops one registration of a value. */
  unregister(value: string): void;
  /** The text with every registered value (and its JSON-escaped forms) replaced by `[REDACTED]`. */
  redact(text: string): string;
  /** How many distinct values are registered. */
  size(): number;
}

/** What a registered value becomes in redacted text. */
export const REDACTED = '[REDACTED]';

/**
 * Values shorter than this are not redacted: a 1-3 character "secret" collides with timestamps,
 * levels and ordinary words, so redacting it would mangle every line while protecting nothing a
 * guess couldn't recover anyway. Such values are rejected as secrets elsewhere, not hidden here.
 */
export const MIN_REDACTED_LENGTH = 4;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// A value as it appears inside a JSON string (a log line), and inside a JSON string embedded in
// another JSON string (a logged body that was itself JSON): quotes, backslashes and control
// characters are escaped differently at each level.
function formsOf(value: string): string[] {
  const once = JSON.stringify(value).slice(1, -1);
  const twice = JSON.stringify(once).slice(1, -1);
  return [...new Set([value, once, twice])];
}

/** Creates an empty redactor; the sync-worker registers each hydrated value before a connector runs. */
export function createRedactor(): Redactor {
  const counts = new Map<string, number>();
  let pattern: RegExp | undefined;
  let dirty = false;

  function compile(): RegExp | undefined {
    if (dirty) {
      const forms = new Set<string>();
      for (const value of counts.keys()) for (const f of formsOf(value)) forms.add(f);
      // Longest first: a value that contains another registered value is replaced whole.
      const sorted = [...forms].sort((a, b) => b.length - a.length);
      pattern = sorted.length === 0 ? undefined : new RegExp(sorted.map(escapeRegExp).join('|'), 'g');
      dirty = false;
    }
    return pattern;
  }

  return {
    register(value) {
      if (typeof value !== 'string' || value.length < MIN_REDACTED_LENGTH) return;
      counts.set(value, (counts.get(value) ?? 0) + 1);
      dirty = true;
    },
    unregister(value) {
      const n = counts.get(value);
      if (n === undefined) return;
      if (n > 1) counts.set(value, n - 1);
      else {
        counts.delete(value);
        dirty = true;
      }
    },
    redact(text) {
      const re = compile();
      return re ? text.replace(re, REDACTED) : text;
    },
    size() {
      return counts.size;
    },
  };
}
