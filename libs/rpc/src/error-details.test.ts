import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { boundText, ERROR_DETAILS_KEY, MAX_ERROR_DETAILS_CHARS, readErrorDetails, writeErrorDetails } from './error-details';

describe('error details metadata', () => {
  it('round-trips details, non-ASCII included, as an ASCII header value', () => {
    const md = new grpc.Metadata();
    const details = [{ field: '$.api_token', reason: 'required – fällt' }, { reason: 'emoji 🔑' }];
    writeErrorDetails(md, details);
    const raw = md.get(ERROR_DETAILS_KEY)[0] as string;
    expect(raw).toMatch(/^[\x20-\x7e]*$/);
    expect(readErrorDetails(md)).toEqual(details);
  });

  it('writes nothing when there are no details', () => {
    const md = new grpc.Metadata();
    writeErrorDetails(md, []);
    expect(md.get(ERROR_DETAILS_KEY)).toEqual([]);
  });

  it('drops malformed details instead of trusting them', () => {
    for (const value of ['not json', '{"reason":"x"}', '[1, {"field": 2}, {"reason": 3}]']) {
      const md = new grpc.Metadata();
      md.set(ERROR_DETAILS_KEY, value);
      expect(readErrorDetails(md)).toEqual([]);
    }
    const md = new grpc.Metadata();
    md.set(ERROR_DETAILS_KEY, '[{"reason":"ok","field":7,"extra":"x"}]');
    expect(readErrorDetails(md)).toEqual([{ reason: 'ok' }]);
    expect(readErrorDetails(undefined)).toEqual([]);
  });

  it('bounds details in number and size', () => {
    const md = new grpc.Metadata();
    const huge = 'é'.repeat(100_000);
    writeErrorDetails(md, Array.from({ length: 100 }, () => ({ field: huge, reason: huge })));
    const raw = md.get(ERROR_DETAILS_KEY)[0] as string;
    expect(raw.length).toBeLessThanOrEqual(MAX_ERROR_DETAILS_CHARS);
    const read = readErrorDetails(md);
    expect(read.length).toBeGreaterThan(0);
    expect(read[0]!.field!.endsWith('…')).toBe(true);
  });

  it('cuts text at a character boundary within its byte budget', () => {
    expect(boundText('short', 10)).toBe('short');
    const cut = boundText('🔑'.repeat(10), 10);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(10);
    expect(cut).toBe('🔑…');
  });
});
