/** Replaces registered secret values in text before it leaves the process (log lines, connector errors). */
export interface Redactor {
  /** Adds a value; values shorter than {@link MIN_REDACTED_LENGTH} are ignored. Counted: register twice, unregister twice. */
  register(value: string): void;
  /** Drops one registration of a value. */
  unregister(value: string): void;
  /**
   * The text with every registered value replaced by `[REDACTED]`, in each form it takes on its way
   * out: JSON-escaped, URL- and form-encoded, base64 (standard and URL-safe, with or without
   * padding), and any base64 run that decodes to text holding a registered value (a `Basic` header,
   * a token wrapped in a larger encoded blob).
   */
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
// Encoded forms: what a connector or an HTTP library turns a secret into before it is logged or
// thrown (a query string, a form body, a Basic header, a token in a JSON Web structure).
function formsOf(value: string): string[] {
  const once = JSON.stringify(value).slice(1, -1);
  const twice = JSON.stringify(once).slice(1, -1);
  const base64 = Buffer.from(value, 'utf8').toString('base64');
  const encoded = [
    encodeURIComponent(value),
    encodeURI(value),
    new URLSearchParams({ v: value }).toString().slice(2),
    base64,
    base64.replace(/=+$/, ''),
    Buffer.from(value, 'utf8').toString('base64url'),
  ];
  return [...new Set([value, once, twice, ...encoded, ...encoded.map((e) => JSON.stringify(e).slice(1, -1))])];
}

// A run of base64 (either alphabet) long enough to hide a registered value.
const BASE64_RUN = new RegExp(`[A-Za-z0-9+/_-]{${Math.ceil((MIN_REDACTED_LENGTH * 4) / 3)},}={0,2}`, 'g');

/** The text a base64 run decodes to, when it decodes to text at all (a base64 run inside a word decodes to noise). */
function decodeBase64(run: string): string | undefined {
  const bytes = Buffer.from(run.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  const text = bytes.toString('utf8');
  return text.includes('\uFFFD') ? undefined : text;
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
      if (!re) return text;
      const direct = text.replace(re, REDACTED);
      // A registered value embedded in a longer encoded string (`user:secret` as a Basic header)
      // shifts its base64 alignment, so no fixed form matches: decode the runs and look inside.
      return direct.replace(BASE64_RUN, (run) => {
        const decoded = decodeBase64(run);
        if (decoded === undefined) return run;
        re.lastIndex = 0;
        const hit = re.test(decoded);
        re.lastIndex = 0;
        return hit ? REDACTED : run;
      });
    },
    size() {
      return counts.size;
    },
  };
}
