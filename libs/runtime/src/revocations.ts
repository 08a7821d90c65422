import type * as grpc from '@grpc/grpc-js';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { eventsV1, revocationSubjects, streamName, type MessagingNamespace } from '@coffer/contracts';
import { decodeCloudEvent } from '@coffer/messaging';
import type { Logger } from '@coffer/telemetry';
import { createRevocationList, createTokenVerifier, type RevocationList, type TokenKind, type TokenVerifier } from '@coffer/tokens';
import { jwksFromAuth } from './jwks';

/** Options of {@link watchRevocations}. */
export interface WatchRevocationsOptions {
  nc: NatsConnection;
  namespace: MessagingNamespace;
  logger: Logger;
  /** The list the token verifier checks; a fresh one by default. */
  list?: RevocationList;
  /**
   * How far back to read on start: at least the longest token lifetime, so every revocation of a
   * token that is still valid is known. Default 2 hours.
   */
  lookbackMs?: number;
  /** How long `ready` waits for the catch-up before resolving anyway (logged). Default 10 s. */
  readyTimeoutMs?: number;
  /** Waits before following again after the stream could not be read. Default 1 s. */
  retryDelayMs?: number;
}

/** A running revocation follower. */
export interface RevocationWatch {
  list: RevocationList;
  /** Resolves once every revocation published before the start has been applied (or on the timeout). */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Follows auth's revocation events (an ordered JetStream consumer over `<root>.auth.revocation.>`,
 * from `lookbackMs` ago) into a {@link RevocationList}: each service refuses a revoked token from the
 * moment the event arrives, with no call to auth per request.
 */
export function watchRevocations(options: WatchRevocationsOptions): RevocationWatch {
  const { nc, namespace: ns, logger } = options;
  const list = options.list ?? createRevocationList();
  const lookbackMs = options.lookbackMs ?? 2 * 60 * 60_000;
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  let running = true;
  let stopCurrent: (() => Promise<void>) | undefined;
  let markReady!: () => void;
  const caughtUp = new Promise<void>((resolve) => (markReady = resolve));
  const prune = setInterval(() => list.prune(), 60_000);
  prune.unref();

  function apply(headers: Parameters<typeof decodeCloudEvent>[0], data: Uint8Array): void {
    const event = decodeCloudEvent(headers, data);
    switch (event.name) {
      case 'TokenRevoked': {
        const e = event.data as eventsV1.TokenRevoked;
        list.revokeToken(e.tokenId, new Date(e.expiresAt));
        break;
      }
      case 'ApplicationDisabled': {
        const e = event.data as eventsV1.ApplicationDisabled;
        list.revokeIdentity(e.clientId, new Date(e.occurredAt));
        break;
      }
      case 'ServiceIdentityRevoked': {
        const e = event.data as eventsV1.ServiceIdentityRevoked;
        list.revokeIdentity(e.clientId, new Date(e.occurredAt));
        break;
      }
      default:
        logger.debug({ type: event.type }, 'ignoring an event on the revocation subject');
    }
  }

  async function follow(): Promise<void> {
    const js = jetstream(nc);
    const consumer = await js.consumers.get(streamName(ns, 'auth'), {
      filter_subjects: revocationSubjects(ns),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(Date.now() - lookbackMs).toISOString(),
    });
    if ((await consumer.info(true)).num_pending === 0) markReady();
    const messages = await consumer.consume();
    stopCurrent = async () => void (await messages.close());
    for await (const m of messages) {
      try {
        apply(m.headers, m.data);
      } catch (err) {
        logger.error({ err, seq: m.seq }, 'could not apply a revocation event');
      }
      if (m.info.pending === 0) markReady();
      if (!running) break;
    }
  }

  const loop = (async () => {
    while (running) {
      try {
        await follow();
      } catch (err) {
        if (!running) break;
        logger.warn({ err }, 'cannot follow revocations yet; retrying');
      }
      // Following again re-reads the lookback window: applying a revocation twice changes nothing.
      if (running) await new Promise((r) => setTimeout(r, retryDelayMs));
    }
  })();

  const timeoutMs = options.readyTimeoutMs ?? 10_000;
  const ready = Promise.race([
    caughtUp,
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        logger.warn({ timeoutMs }, 'revocations not caught up yet; serving while they arrive');
        resolve();
      }, timeoutMs);
      t.unref();
      void caughtUp.then(() => clearTimeout(t));
    }),
  ]);

  return {
    list,
    ready,
    async stop() {
      running = false;
      clearInterval(prune);
      await stopCurrent?.().catch(() => undefined);
      await loop;
    },
  };
}

/** Options of {@link startTokenVerification}. */
export interface TokenVerificationOptions {
  runtime: { nc: NatsConnection; namespace: MessagingNamespace; logger: Logger };
  issuer: string;
  /** The verifying service's name, the audience its tokens must carry. */
  audience: string;
  authAddress: string;
  /** Kinds of token the service takes; default service tokens only. */
  acceptedKinds?: readonly TokenKind[];
  /** Channel credentials for fetching the JWKS from auth (mutual TLS). */
  credentials?: grpc.ChannelCredentials;
}

/**
 * The token verifier every service puts in front of its gRPC server: auth's JWKS (cached) plus the
 * revocations followed from auth's events. Resolves once the revocations have caught up.
 */
export async function startTokenVerification(options: TokenVerificationOptions): Promise<{ verifier: TokenVerifier; stop(): Promise<void> }> {
  const { runtime } = options;
  const watch = watchRevocations({ nc: runtime.nc, namespace: runtime.namespace, logger: runtime.logger });
  await watch.ready;
  const verifier = createTokenVerifier({
    issuer: options.issuer,
    audience: options.audience,
    fetchJwks: jwksFromAuth(options.authAddress, options.credentials),
    acceptedKinds: options.acceptedKinds,
    revocations: watch.list,
  });
  return { verifier, stop: () => watch.stop() };
}
