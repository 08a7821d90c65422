import { describe, expect, it } from 'vitest';
import { decide, evolve, initialState, normalizeOrigin, type ApplicationCommand } from './application.decider';

const create: ApplicationCommand = {
  type: 'CreateApplication',
  clientId: 'app-1',
  organizationId: 'org-1',
  name: ' Platform ',
  allowedOrigins: ['https://app.example.com', 'https://app.example.com/', 'http://localhost:3000'],
  secretHash: 'h1',
  now: '2026-01-01T00:00:00.000Z',
};
const created = () => decide(create, initialState()).reduce(evolve, initialState());

describe('application decider', () => {
  it('creates with a trimmed name and each origin once, normalized', () => {
    expect(created()).toMatchObject({ clientId: 'app-1', organizationId: 'org-1', name: 'Platform', allowedOrigins: ['https://app.example.com', 'http://localhost:3000'], secretHash: 'h1' });
  });

  it('names the offending origin', () => {
    for (const bad of ['https://app.example.com/path', 'ftp://x.example.com', 'https://user@x.example.com', 'x.example.com', 'https://x.example.com?q=1']) {
      expect(() => decide({ ...create, allowedOrigins: ['https://ok.example.com', bad] }, initialState()), bad).toThrow(/allowed_origins\[1\]/);
    }
    expect(normalizeOrigin('https://App.Example.com')).toBeUndefined();
    expect(normalizeOrigin('https://app.example.com:8443')).toBe('https://app.example.com:8443');
  });

  it('rotates the secret keeping the previous hash until the end of the grace period', () => {
    const s = created();
    const rotated = decide({ type: 'RotateApplicationSecret', secretHash: 'h2', now: '2026-01-02T00:00:00.000Z', graceMs: 3_600_000 }, s).reduce(evolve, s);
    expect(rotated).toMatchObject({ secretHash: 'h2', previousSecretHash: 'h1', previousValidUntil: '2026-01-02T01:00:00.000Z' });
  });

  it('disables once, and a disabled application can no longer rotate', () => {
    const s = created();
    const disabled = decide({ type: 'DisableApplication', now: '2026-01-03T00:00:00.000Z' }, s).reduce(evolve, s);
    expect(disabled.disabledAt).toBe('2026-01-03T00:00:00.000Z');
    expect(decide({ type: 'DisableApplication', now: 'later' }, disabled)).toEqual([]);
    expect(() => decide({ type: 'RotateApplicationSecret', secretHash: 'h3', now: 'x', graceMs: 0 }, disabled)).toThrow(/disabled/);
    expect(() => decide({ type: 'DisableApplication', now: 'x' }, initialState())).toThrow(/no such application/);
  });
});
