import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ERROR_DETAILS_KEY, readErrorDetails, writeErrorDetails } from './error-details';

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
});
