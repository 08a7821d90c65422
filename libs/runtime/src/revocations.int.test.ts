import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectNats, createJetStreamPublisher, ensureServiceStream, integrationEventMessage } from '@coffer/messaging';
import { createLogger } from '@coffer/telemetry';
import { deleteStreams, testNatsUrl, uniqueNamespace } from '@coffer/testing';
import { watchRevocations } from './revocations';

const logger = createLogger({ service: 'revocations-test', level: 'silent' });
const ns = uniqueNamespace();
const soon = () => new Date(Date.now() + 600_000);
const principal = (over: { tokenId?: string; subject?: string; applicationId?: string; issuedAt?: Date }) => ({
  tokenId: randomUUID(),
  subject: 'someone',
  issuedAt: new Date(Date.now() - 60_000),
  ...over,
});

async function until(check: () => boolean, timeoutMs = 2_000): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - start;
}

describe('watchRevocations: every service follows auth’s revocation events', () => {
  let nc: NatsConnection;
  let publish: ReturnType<typeof createJetStreamPublisher>;
  const tokenRevoked = (tokenId: string, expiresAt: Date) =>
    publish(integrationEventMessage(ns, 'TokenRevoked', { tokenId, expiresAt: expiresAt.toISOString(), revokedBy: 'operator', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));

  beforeAll(async () => {
    nc = await connectNats({ servers: testNatsUrl(), name: 'revocations-test' });
    await ensureServiceStream(nc, ns, 'auth');
    publish = createJetStreamPublisher(nc);
  });

  afterAll(async () => {
    await nc?.close();
    await deleteStreams(testNatsUrl(), ns);
  });

  it('knows, once ready, every revocation published before it started (a restarted service forgets nothing)', async () => {
    const earlier = randomUUID();
    await tokenRevoked(earlier, soon());
    await publish(integrationEventMessage(ns, 'ApplicationDisabled', { clientId: 'app-1', organizationId: 'org', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    const watch = watchRevocations({ nc, namespace: ns, logger });
    await watch.ready;
    expect(watch.list.isRevoked(principal({ tokenId: earlier }))).toBe(true);
    expect(watch.list.isRevoked(principal({ subject: 'end-user', applicationId: 'app-1' }))).toBe(true);
    // Tokens of the application issued after it was disabled would not be refused by this rule (auth issues none).
    expect(watch.list.isRevoked(principal({ subject: 'end-user', applicationId: 'app-1', issuedAt: new Date(Date.now() + 60_000) }))).toBe(false);
    await watch.stop();
  });

  it('applies a new revocation within milliseconds, and ignores other auth events', async () => {
    const watch = watchRevocations({ nc, namespace: ns, logger });
    await watch.ready;
    await publish(integrationEventMessage(ns, 'OrganizationCreated', { organizationId: 'o', name: 'n', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    const jti = randomUUID();
    expect(watch.list.isRevoked(principal({ tokenId: jti }))).toBe(false);
    const sent = Date.now();
    await tokenRevoked(jti, soon());
    await until(() => watch.list.isRevoked(principal({ tokenId: jti })));
    expect(Date.now() - sent).toBeLessThan(1_000);
    await publish(integrationEventMessage(ns, 'ServiceIdentityRevoked', { clientId: 'operator', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }));
    await until(() => watch.list.isRevoked(principal({ subject: 'operator' })));
    await watch.stop();
  });

  it('becomes ready even when auth has published nothing yet, and keeps retrying while the stream is missing', async () => {
    const empty = uniqueNamespace();
    const watch = watchRevocations({ nc, namespace: empty, logger, readyTimeoutMs: 500, retryDelayMs: 50 });
    await watch.ready;
    await ensureServiceStream(nc, empty, 'auth');
    const jti = randomUUID();
    await createJetStreamPublisher(nc)(
      integrationEventMessage(empty, 'TokenRevoked', { tokenId: jti, expiresAt: soon().toISOString(), revokedBy: 'x', occurredAt: new Date().toISOString() }, { eventId: randomUUID(), source: 'coffer/auth', time: new Date() }),
    );
    await until(() => watch.list.isRevoked(principal({ tokenId: jti })), 5_000);
    await watch.stop();
    await deleteStreams(testNatsUrl(), empty);
  });
});
