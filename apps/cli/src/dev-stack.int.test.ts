import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { authV1 } from '@coffer/contracts';
import { createPromiseClient } from '@coffer/rpc';
import { testNatsUrl } from '@coffer/testing';
import { externalDevStackPlace, startExternalDevStack } from './external-dev-stack';


describe('the development stack with DATABASE_URL and NATS_URL', () => {
  const place = externalDevStackPlace('devstack');
  const home = place.home;

  afterAll(() => place.remove());

  it('starts no embedded server, creates and seeds the database DATABASE_URL names, and stops every service', async () => {
    const lines: string[] = [];
    const dev = await startExternalDevStack(place, { out: (text) => lines.push(text) });
    const pids = Object.values(dev.state.pids);
    try {
      expect(dev.postgres).toBeUndefined();
      expect(dev.nats).toBeUndefined();
      expect(Object.keys(dev.state.pids).sort()).toEqual(['auth', 'config', 'edge', 'secrets', 'sync-worker']);
      expect(existsSync(join(home, 'postgres'))).toBe(false);
      expect(existsSync(join(home, 'nats'))).toBe(false);
      expect(dev.state.endpoints.nats).toBe(testNatsUrl());
      expect(lines.join('\n')).toContain('Postgres at DATABASE_URL');
      // The organization and application were made in the database DATABASE_URL names: their credentials work.
      const auth = createPromiseClient(authV1.AuthServiceClient, dev.state.endpoints.auth);
      const { clientId, clientSecret } = dev.seed.seed.application;
      expect((await auth.issueApplicationToken({ clientId, clientSecret })).accessToken).toMatch(/^ey/);
      auth.close();
      // The edge forwards to the same auth: the application token comes through it as a Connect JSON call.
      const viaEdge = await fetch(`http://${dev.state.endpoints.edge}/coffer.auth.v1.AuthService/IssueApplicationToken`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ clientId, clientSecret }),
      });
      expect(viaEdge.status).toBe(200);
      expect(((await viaEdge.json()) as { accessToken: string }).accessToken).toMatch(/^ey/);
      expect(dev.seed.definitions.map((d) => d.connector).sort()).toEqual(['builtin:http-json', 'builtin:postgres']);
    } finally {
      await dev.stop();
    }
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(join(home, 'stack.json'))).toBe(false);
    expect(lines.filter((l) => l.startsWith('stopped '))).toEqual(['stopped edge', 'stopped sync-worker', 'stopped config', 'stopped secrets', 'stopped auth'].map((p) => expect.stringMatching(new RegExp(`^${p} \\(`))));
  }, 240_000);
});
