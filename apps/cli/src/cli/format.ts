/** Lays rows out as a plain-text table with a header, each column as wide as its widest cell. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  if (!rows.length) return '(none)';
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n');
}

/** `key: value` lines, keys aligned. */
export function fields(entries: readonly (readonly [string, string])[]): string {
  const width = Math.max(...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`).join('\n');
}

/** An error as the one line the CLI prints: the code (when the server gave one) and the message, never a stack. */
export function errorLine(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && 'message' in err && typeof (err as { code: unknown }).code === 'string') {
    const { code, message } = err as { code: string; message: string };
    return `error: ${code}: ${firstLine(message)}`;
  }
  return `error: ${firstLine(err instanceof Error ? err.message : String(err))}`;
}

const firstLine = (text: string) => text.split('\n')[0]!.trim();

/** The progress line of a sync job: status, records so far, seconds waited. */
export function syncProgressLine(jobId: string, status: string, records: number, elapsedMs: number): string {
  return `sync ${jobId}: ${status}, ${records} record(s), ${(elapsedMs / 1000).toFixed(1)} s`;
}
