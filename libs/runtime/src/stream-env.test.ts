import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DEFAULT_STREAM_SETTINGS } from '@coffer/messaging';
import { commonEnv, parseEnv } from './env';
import { parseByteSize, parseDuration, streamSettingsFromEnv } from './stream-env';

const schema = z.object({ ...commonEnv });
const base = { DATABASE_URL: 'postgres://127.0.0.1/x' };

describe('stream settings from the environment', () => {
  it('defaults to the library defaults: a week, no size cap, any number of messages, one replica', () => {
    expect(streamSettingsFromEnv(parseEnv(schema, base, 'test'))).toEqual(DEFAULT_STREAM_SETTINGS);
  });

  it('reads durations, sizes, counts and replicas, and unlimited', () => {
    const cfg = parseEnv(
      schema,
      { ...base, COFFER_STREAM_MAX_AGE: '30d', COFFER_STREAM_MAX_BYTES: '20GiB', COFFER_STREAM_MAX_MSGS: '5000000', COFFER_STREAM_REPLICAS: '3' },
      'test',
    );
    expect(streamSettingsFromEnv(cfg)).toEqual({ maxAgeMs: 30 * 86_400_000, maxBytes: 20 * 1024 ** 3, maxMsgs: 5_000_000, replicas: 3 });
    const unlimited = parseEnv(schema, { ...base, COFFER_STREAM_MAX_AGE: 'unlimited', COFFER_STREAM_MAX_BYTES: 'unlimited' }, 'test');
    expect(streamSettingsFromEnv(unlimited)).toMatchObject({ maxAgeMs: 0, maxBytes: -1, maxMsgs: -1 });
  });

  it('lists every bad stream setting at once, naming the variable', () => {
    let message = '';
    try {
      parseEnv(
        schema,
        { ...base, COFFER_STREAM_MAX_AGE: '1h', COFFER_STREAM_MAX_BYTES: '10 gigs', COFFER_STREAM_MAX_MSGS: '-5', COFFER_STREAM_REPLICAS: '7' },
        'test',
      );
    } catch (err) {
      message = (err as Error).message;
    }
    // An hour is shorter than the two hours of revocations every service reads back.
    expect(message).toContain('COFFER_STREAM_MAX_AGE: must be a duration of at least 2h');
    expect(message).toContain('COFFER_STREAM_MAX_BYTES');
    expect(message).toContain('COFFER_STREAM_MAX_MSGS');
    expect(message).toContain('COFFER_STREAM_REPLICAS');
    expect(message).not.toContain('10 gigs');
  });

  it('parses durations and sizes with their units', () => {
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('36h')).toBe(129_600_000);
    expect(parseDuration('90m')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('unlimited')).toBe(0);
    for (const bad of ['', '7', 'd', '1.5h', '-1d', '7 weeks']) expect(parseDuration(bad)).toBeUndefined();
    expect(parseByteSize('1GiB')).toBe(1024 ** 3);
    expect(parseByteSize('512 mib')).toBe(512 * 1024 ** 2);
    expect(parseByteSize('4096')).toBe(4096);
    expect(parseByteSize('unlimited')).toBe(-1);
    for (const bad of ['', 'GiB', '1.5GiB', '1GB', '-1']) expect(parseByteSize(bad)).toBeUndefined();
  });
});
