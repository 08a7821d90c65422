import type { ActorTrack, SecretValues } from './workload';

/** Every `{"_secret": coordinate}` in a partial config, in document order. */
export function secretCoordinatesIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(secretCoordinatesIn);
  if (value === null || typeof value !== 'object') return [];
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 1 && entries[0]![0] === '_secret' && typeof entries[0]![1] === 'string') return [entries[0]![1]];
  return entries.flatMap(([, v]) => secretCoordinatesIn(v));
}

/** The base of a versioned coordinate (everything before the last `_v`). */
export function baseOf(coordinate: string): string {
  const at = coordinate.lastIndexOf('_v');
  return at < 0 ? coordinate : coordinate.slice(0, at);
}

/** An active secret version at secrets. */
export interface ActiveVersion {
  coordinate: string;
  baseCoordinate: string;
}

/** A live (not deleted) actor at config: its current partial config and every partial config it ever committed. */
export interface LiveActor {
  actorId: string;
  partialConfig: unknown;
  /** The partial configs of its ActorCreated / ActorConfigUpdated events. */
  history: unknown[];
}

/** An active version nothing legitimately holds, and why. */
export interface Orphan {
  coordinate: string;
  reason: 'base used by no live actor' | 'version never in a committed config';
}

/**
 * The orphans among `active`: a version is held when its base is in a live actor's current partial
 * config and the version itself was in one of that actor's committed configs (older versions of a base
 * still in use are its history, kept on purpose). Anything else is an orphan: a base nothing uses any
 * more, or a version written at secrets that no committed config ever pointed at.
 */
export function findOrphans(active: readonly ActiveVersion[], live: readonly LiveActor[]): Orphan[] {
  const ownerOfBase = new Map<string, LiveActor>();
  for (const actor of live) for (const c of secretCoordinatesIn(actor.partialConfig)) ownerOfBase.set(baseOf(c), actor);
  const historyOf = new Map<LiveActor, Set<string>>();
  const history = (actor: LiveActor) => {
    let set = historyOf.get(actor);
    if (!set) {
      set = new Set([...secretCoordinatesIn(actor.partialConfig), ...actor.history.flatMap(secretCoordinatesIn)]);
      historyOf.set(actor, set);
    }
    return set;
  };
  const orphans: Orphan[] = [];
  for (const v of active) {
    const owner = ownerOfBase.get(v.baseCoordinate);
    if (!owner) orphans.push({ coordinate: v.coordinate, reason: 'base used by no live actor' });
    else if (!history(owner).has(v.coordinate)) orphans.push({ coordinate: v.coordinate, reason: 'version never in a committed config' });
  }
  return orphans;
}

/** Outbox events absent from the stream, and events on it more than once. */
export function compareWithStream(outboxIds: readonly string[], onStream: ReadonlyMap<string, number>): { missing: number; doubled: number } {
  let missing = 0;
  let doubled = 0;
  for (const id of outboxIds) {
    const n = onStream.get(id) ?? 0;
    if (n === 0) missing++;
    else if (n > 1) doubled++;
  }
  return { missing, doubled };
}

/** What the suite read back of one actor at the end. */
export type Observed =
  | { found: false }
  | { found: true; name: string; version: number; values?: SecretValues; hydrateError?: string };

/**
 * Why the last acknowledged write of an actor cannot be read back, or undefined when it can: the
 * actor must be there (or gone, after an acknowledged delete), carry the name of that write or of a
 * later one whose outcome is unknown, be at least at its version, and hydrate to its secret values.
 */
export function lostWrite(track: ActorTrack, observed: Observed, values: ReadonlyMap<string, SecretValues>): string | undefined {
  const last = track.lastAcked;
  if (!last) return undefined;
  if (last.kind === 'delete') return observed.found ? 'deleted (acknowledged) but still readable' : undefined;
  if (!observed.found) return track.deleteUnknown ? undefined : 'acknowledged, then NOT_FOUND';
  if (!track.acceptable.has(observed.name)) return 'holds a write nobody acknowledged after the last acknowledged one';
  if (observed.version < last.version) return `at version ${observed.version}, below the acknowledged ${last.version}`;
  if (observed.hydrateError) return `secrets do not hydrate (${observed.hydrateError})`;
  const expected = values.get(observed.name);
  if (!expected || !observed.values) return 'secret values unknown';
  if (expected.apiToken !== observed.values.apiToken || expected.clientSecret !== observed.values.clientSecret) return 'hydrates to other secret values';
  return undefined;
}

/** Writes applied more than once: for each write tag (an actor's name), the events carrying it beyond the first. */
export function duplicateWrites(eventNames: readonly string[]): number {
  const seen = new Map<string, number>();
  for (const n of eventNames) seen.set(n, (seen.get(n) ?? 0) + 1);
  let extra = 0;
  for (const n of seen.values()) if (n > 1) extra += n - 1;
  return extra;
}

/** One line of the chaos table. */
export interface ReportRow {
  scenario: string;
  tried: number;
  acknowledged: number;
  lost: number;
  duplicates: number;
  missingOnNats: number;
  doubledOnNats: number;
  orphans: number;
  stuck: number;
  exits: number;
  recovery: string;
}

/** The columns that fail the suite when not zero. */
export const failingColumns = ['lost', 'duplicates', 'missingOnNats', 'doubledOnNats', 'orphans', 'stuck', 'exits'] as const satisfies readonly (keyof ReportRow)[];

/** The failing columns that are not zero in `row`. */
export function failuresOf(row: ReportRow): string[] {
  return failingColumns.filter((c) => row[c] !== 0).map((c) => `${c} ${row[c]}`);
}

/** The sum of the rows, with `recovery` given (it is not a sum). */
export function totalRow(rows: readonly ReportRow[], recovery: string, overrides: Partial<ReportRow> = {}): ReportRow {
  const sum = (k: keyof Omit<ReportRow, 'scenario' | 'recovery'>) => rows.reduce((s, r) => s + r[k], 0);
  return {
    scenario: '**total**',
    tried: sum('tried'),
    acknowledged: sum('acknowledged'),
    lost: sum('lost'),
    duplicates: sum('duplicates'),
    missingOnNats: sum('missingOnNats'),
    doubledOnNats: sum('doubledOnNats'),
    orphans: sum('orphans'),
    stuck: sum('stuck'),
    exits: sum('exits'),
    recovery,
    ...overrides,
  };
}

const headers = ['scenario', 'tried', 'acknowledged', 'lost', 'duplicate effects', 'missing on NATS', 'doubled on NATS', 'orphan versions', 'stuck actors', 'process exits', 'recovery time'];

/** The rows as one Markdown table. */
export function renderTable(rows: readonly ReportRow[]): string {
  const cells = rows.map((r) => [r.scenario, r.tried, r.acknowledged, r.lost, r.duplicates, r.missingOnNats, r.doubledOnNats, r.orphans, r.stuck, r.exits, r.recovery].map(String));
  const lines = [`| ${headers.join(' | ')} |`, `|${headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...cells.map((c) => `| ${c.join(' | ')} |`)];
  return lines.join('\n');
}

/** Milliseconds as seconds with one decimal, e.g. `4.2 s`. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
