/** A `pattern` Coffer cannot run: the message says which construct, never a config value. */
export class PatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatternError';
  }
}

// Java's POSIX classes (US-ASCII, as java.util.regex reads them without UNICODE_CHARACTER_CLASS) and RE2's names for them.
const POSIX: Record<string, string> = {
  Lower: 'lower',
  Upper: 'upper',
  ASCII: 'ascii',
  Alpha: 'alpha',
  Digit: 'digit',
  Alnum: 'alnum',
  Punct: 'punct',
  Graph: 'graph',
  Print: 'print',
  Blank: 'blank',
  Cntrl: 'cntrl',
  XDigit: 'xdigit',
  Space: 'space',
};
const hex = (cp: number) => `\\x{${cp.toString(16).toUpperCase()}}`;
// Java's \h and \v (vertical whitespace since Java 8), as class contents.
const HORIZONTAL = '\\x{9}\\x{20}\\x{A0}\\x{1680}\\x{180E}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}';
const VERTICAL = '\\x{A}-\\x{D}\\x{85}\\x{2028}\\x{2029}';
// \Z: the end of the input, or before a line terminator that ends it.
const END_BEFORE_FINAL_TERMINATOR = '(?:(?:\\x{D}\\x{A}|[\\x{A}\\x{D}\\x{85}\\x{2028}\\x{2029}])?\\z)';
const ASCII_PUNCTUATION = /^[!-/:-@[-`{-~]$/;
const FLAGS_KEPT = new Set(['i', 'm', 's']);
// d (UNIX_LINES) and u (Unicode case folding) change nothing RE2 does differently here.
const FLAGS_DROPPED = new Set(['d', 'u']);

type Item = { kind: 'char' | 'set'; text: string };

/**
 * Translates a JSON Schema `pattern` read as a Java regular expression (java.util.regex, which is
 * how Airbyte's validator compiles it) into RE2 syntax: escapes Java accepts and ECMAScript's `u`
 * mode does not (`\-`, `\_`, `\@`), `\Q…\E`, `\p{Alpha}` and the other POSIX classes, `\h`, `\v`,
 * `\R`, `\Z`, `\e`, octal `\0nn`, `\uXXXX`, nested class unions `[a-z[0-9]]`, named groups and the
 * i/m/s flags. Throws {@link PatternError} for what Java refuses (an unknown escape) and for what RE2
 * cannot run in linear time or at all (backreferences, possessive quantifiers, atomic groups, class
 * intersections, comments mode). Lookarounds are passed on for the caller to handle. Two documented
 * differences remain, both stricter: `$` without `(?m)` matches only at the very end (Java also
 * before a final line terminator), and `.` excludes only `\n` (Java also `\r`, `\u0085`, `\u2028`,
 * `\u2029`).
 */
export function re2FromJava(pattern: string): string {
  let i = 0;
  const fail = (why: string): never => {
    throw new PatternError(why);
  };

  const literal = (cp: number): string => {
    const ch = String.fromCodePoint(cp);
    if (ASCII_PUNCTUATION.test(ch)) return `\\${ch}`;
    return cp < 0x20 || cp === 0x7f ? hex(cp) : ch;
  };

  const property = (negate: boolean, inClass: boolean): Item => {
    let name: string;
    if (pattern[i] === '{') {
      const end = pattern.indexOf('}', i);
      if (end < 0) fail('has an unclosed \\p{…}');
      name = pattern.slice(i + 1, end);
      i = end + 1;
    } else {
      name = pattern[i] ?? fail('ends inside \\p');
      i++;
    }
    const posix = POSIX[name];
    if (posix) {
      const cls = `[:${negate ? '^' : ''}${posix}:]`;
      return { kind: 'set', text: inClass ? cls : `[${cls}]` };
    }
    if (/^(In|block=|blk=)/.test(name)) fail('uses a Unicode block (\\p{In…}), which RE2 does not know');
    if (name.startsWith('java')) fail('uses a java.lang.Character class (\\p{java…}), which RE2 does not know');
    const bare = name.replace(/^(general_category=|gc=|script=|sc=|Is)/, '');
    if (!/^[A-Za-z_]+$/.test(bare)) fail('has a malformed \\p{…}');
    // A category (Lu) or script (Latin); RE2 refuses, at compile time, a name it does not know.
    return { kind: 'set', text: `\\${negate ? 'P' : 'p'}{${bare}}` };
  };

  const hexDigits = (from: number, count: number): number | undefined => {
    const s = pattern.slice(from, from + count);
    return s.length === count && /^[0-9A-Fa-f]+$/.test(s) ? parseInt(s, 16) : undefined;
  };

  /** The escape after a backslash (i at the character after it). */
  const escape = (inClass: boolean): Item => {
    const c = pattern[i] ?? fail('ends with a lone backslash');
    i++;
    const char = (cp: number): Item => ({ kind: 'char', text: literal(cp) });
    const set = (text: string): Item => ({ kind: 'set', text });
    const outside = (what: string, text: string): Item => (inClass ? fail(`has ${what} inside a character class`) : set(text));
    switch (c) {
      case '\\':
        return { kind: 'char', text: '\\\\' };
      case '0': {
        const digits = /^[0-3]?[0-7]{1,2}/.exec(pattern.slice(i))?.[0] ?? fail('has \\0 without an octal digit after it');
        i += digits.length;
        return { kind: 'char', text: hex(parseInt(digits, 8)) };
      }
      case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9': case 'k':
        return fail('uses a backreference, which cannot be evaluated in linear time');
      case 't': return { kind: 'char', text: '\\t' };
      case 'n': return { kind: 'char', text: '\\n' };
      case 'r': return { kind: 'char', text: '\\r' };
      case 'f': return { kind: 'char', text: '\\f' };
      case 'a': return char(0x07);
      case 'e': return char(0x1b);
      case 'c': {
        const x = pattern[i] ?? fail('ends inside \\c');
        i++;
        return char(x.charCodeAt(0) ^ 64);
      }
      case 'x': {
        if (pattern[i] === '{') {
          const end = pattern.indexOf('}', i);
          const cp = end > i + 1 ? hexDigits(i + 1, end - i - 1) : undefined;
          if (cp === undefined || cp > 0x10ffff) fail('has a malformed \\x{…}');
          i = end + 1;
          return char(cp!);
        }
        const cp = hexDigits(i, 2) ?? fail('has a malformed \\x');
        i += 2;
        return char(cp);
      }
      case 'u': {
        const unit = hexDigits(i, 4) ?? fail('has a malformed \\u');
        i += 4;
        if (unit >= 0xd800 && unit <= 0xdbff && pattern.startsWith('\\u', i)) {
          const low = hexDigits(i + 2, 4);
          if (low !== undefined && low >= 0xdc00 && low <= 0xdfff) {
            i += 6;
            return char(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
          }
        }
        if (unit >= 0xd800 && unit <= 0xdfff) fail('has a lone UTF-16 surrogate');
        return char(unit);
      }
      case 'd': case 'D': case 'w': case 'W':
        return set(`\\${c}`);
      // Java's \s is [ \t\n\x0B\f\r]: RE2's [:space:], not RE2's \s (which leaves out \x0B).
      case 's': return set(inClass ? '[:space:]' : '[[:space:]]');
      case 'S': return set(inClass ? '[:^space:]' : '[[:^space:]]');
      case 'h': return set(inClass ? HORIZONTAL : `[${HORIZONTAL}]`);
      case 'v': return set(inClass ? VERTICAL : `[${VERTICAL}]`);
      case 'H': return outside('\\H', `[^${HORIZONTAL}]`);
      case 'V': return outside('\\V', `[^${VERTICAL}]`);
      case 'R': return outside('\\R', `(?:\\x{D}\\x{A}|[${VERTICAL}])`);
      case 'b': case 'B': case 'A': case 'z':
        return outside(`\\${c}`, `\\${c}`);
      case 'Z': return outside('\\Z', END_BEFORE_FINAL_TERMINATOR);
      case 'p': case 'P':
        return property(c === 'P', inClass);
      case 'Q': {
        const end = pattern.indexOf('\\E', i);
        const quoted = pattern.slice(i, end < 0 ? undefined : end);
        i = end < 0 ? pattern.length : end + 2;
        return { kind: inClass && [...quoted].length === 1 ? 'char' : 'set', text: [...quoted].map((q) => literal(q.codePointAt(0)!)).join('') };
      }
      default: {
        if (/[A-Za-z]/.test(c)) return fail(`uses \\${c}, which is not an escape Java knows or RE2 can run`);
        // Java lets a backslash quote any other character.
        const cp = pattern.codePointAt(i - 1)!;
        if (cp > 0xffff) i++;
        return char(cp);
      }
    }
  };

  /** A character class (i after its `[`), as RE2 text; Java's nested unions are flattened. */
  const charClass = (): string => {
    let negated = false;
    if (pattern[i] === '^') {
      negated = true;
      i++;
    }
    const items: (Item | '-')[] = [];
    for (let first = true; ; first = false) {
      const c = pattern[i] ?? fail('has an unclosed character class');
      if (c === ']' && !first) {
        i++;
        break;
      }
      if (c === '[') {
        i++;
        if (pattern[i] === '^') fail('has a negated class nested in a character class');
        items.push({ kind: 'set', text: charClass().slice(1, -1) });
      } else if (c === '&' && pattern[i + 1] === '&') {
        fail('has a character class intersection (&&), which RE2 does not know');
      } else if (c === '\\') {
        i++;
        items.push(escape(true));
      } else if (c === '-') {
        i++;
        items.push('-');
      } else {
        const cp = pattern.codePointAt(i)!;
        i += cp > 0xffff ? 2 : 1;
        items.push({ kind: 'char', text: literal(cp) });
      }
    }
    // A `-` between two single characters is a range; anywhere else it is itself.
    let out = '';
    for (let k = 0; k < items.length; k++) {
      const item = items[k]!;
      const next = items[k + 1];
      const after = items[k + 2];
      if (item !== '-' && item.kind === 'char' && next === '-' && after !== undefined && after !== '-' && after.kind === 'char') {
        out += `${item.text}-${after.text}`;
        k += 2;
      } else out += item === '-' ? '\\-' : item.text;
    }
    return `[${negated ? '^' : ''}${out}]`;
  };

  /** The opening of a group (i after its `(`). */
  const group = (): string => {
    if (pattern[i] !== '?') return '(';
    const rest = pattern.slice(i + 1);
    if (/^[:=!]/.test(rest)) {
      i += 2;
      return `(?${rest[0]}`;
    }
    if (/^<[=!]/.test(rest)) {
      i += 3;
      return `(?${rest.slice(0, 2)}`;
    }
    if (rest.startsWith('<')) {
      const m = /^<([A-Za-z][A-Za-z0-9]*)>/.exec(rest) ?? fail('has a malformed named group');
      i += 1 + m[0].length;
      return `(?P<${m[1]}>`;
    }
    if (rest.startsWith('>')) fail('uses an atomic group, which RE2 does not know');
    const m = /^([A-Za-z]*)(?:-([A-Za-z]*))?([:)])/.exec(rest) ?? fail('has an unknown group construct');
    const keep = (flags: string) =>
      [...flags]
        .filter((f) => {
          if (FLAGS_KEPT.has(f)) return true;
          if (FLAGS_DROPPED.has(f)) return false;
          return fail(f === 'x' ? 'uses comments mode (?x), which RE2 does not know' : f === 'U' ? 'uses (?U) (Unicode character classes), which RE2 does not know' : `uses the unknown flag ${f}`);
        })
        .join('');
    i += 1 + m[0].length;
    const on = keep(m[1]!);
    const off = keep(m[2] ?? '');
    const flags = `${on}${off ? `-${off}` : ''}`;
    if (m[3] === ':') return flags ? `(?${flags}:` : '(?:';
    return flags ? `(?${flags})` : '';
  };

  /** After a quantifier: Java's lazy form is RE2's too; its possessive form has no RE2 equivalent. */
  const quantifierSuffix = (): string => {
    if (pattern[i] === '+') fail('uses a possessive quantifier, which RE2 does not know');
    if (pattern[i] !== '?') return '';
    i++;
    return '?';
  };

  let out = '';
  while (i < pattern.length) {
    const c = pattern[i]!;
    i++;
    if (c === '\\') out += escape(false).text;
    else if (c === '[') out += charClass();
    else if (c === '(') out += group();
    else if (c === '*' || c === '+' || c === '?') out += c + quantifierSuffix();
    else if (c === '{') {
      const m = /^\d+(,\d*)?\}/.exec(pattern.slice(i));
      if (m) {
        i += m[0].length;
        out += `{${m[0]}${quantifierSuffix()}`;
      } else out += '\\{';
    } else out += c;
  }
  return out;
}
