import type * as grpc from '@grpc/grpc-js';
import type { JWK } from 'jose';
import { DeliverPolicy, jetstream, type Consumer } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { CofferError, eventsV1, revocationSubjects, streamName, type MessagingNamespace } from '@coffer/contracts';
import { decodeCloudEvent } from '@coffer/messaging';
import type { Logger } from '@coffer/telemetry';
import { createRevocationList, createTokenVerifier, type RevocationCheck, type RevocationList, type TokenKind, type TokenVerifier } from '@coffer/tokens';
import { jwksFromAuth } from './jwks';
import { DEFAULT_STARTUP_WAIT_MS, waitForDependency } from './startup-wait';

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
  /** Gap before the second warning while revocations cannot be followed; it doubles up to `maxWarnIntervalMs`. Default 1 s. */
  warnIntervalMs?: number;
  /** Longest gap between two warnings while revocations cannot be followed. Default 60 s. */
  maxWarnIntervalMs?: number;
  /**
   * How long the list may go without being confirmed up to date (connection or stream lost) before
   * token checks answer `unavailable` again. Default 30 s.
   */
  maxStalenessMs?: number;
  /** How often a healthy follower asks the server whether anything is left to read. Default 5 s. */
  probeIntervalMs?: number;
  /**
   * Accept tokens while the list is not known to be current (`COFFER_REVOCATION_FAIL_OPEN`): a revoked
   * token then works until the stream can be read again. Off by default; reported by {@link securityFindings}.
   */
  failOpen?: boolean;
  /** Current time in ms; tests pass their own. Default `Date.now`. */
  now?: () => number;
}

/** A running revocation follower. */
export interface RevocationWatch {
  list: RevocationList;
  /**
   * What a token verifier checks: the list, and whether it is current. `assertCurrent` throws
   * `CofferError('unavailable')` until the stream has been read up to date, and again once it has not
   * been confirmed for `maxStalenessMs` (never with `failOpen`).
   */
  check: RevocationCheck;
  /** True once the stream has been read up to date and confirmed within `maxStalenessMs`. */
  isCurrent(): boolean;
  /** Resolves once every revocation published before the start has been applied (or on the timeout). */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/** The message callers get while the revocation list cannot be trusted. */
export const REVOCATIONS_NOT_LOADED = 'revocation list not yet loaded';

/**
 * Follows auth's revocation events (an ordered JetStream consumer over `<root>.auth.revocation.>`,
 * from `lookbackMs` ago) into a {@link RevocationList}: each service refuses a revoked token from the
 * moment the event arrives, with no call to auth per request. Fails closed: until the stream has been
 * read up to date, and after it has gone unconfirmed for `maxStalenessMs`, `check.assertCurrent()`
 * refuses (unless `failOpen`).
 */
export function watchRevocations(options: WatchRevocationsOptions): RevocationWatch {
  const { nc, namespace: ns, logger } = options;
  const list = options.list ?? createRevocationList();
  const lookbackMs = options.lookbackMs ?? 2 * 60 * 60_000;
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  const firstWarnIntervalMs = options.warnIntervalMs ?? 1_000;
  const maxWarnIntervalMs = options.maxWarnIntervalMs ?? 60_000;
  const maxStalenessMs = options.maxStalenessMs ?? 30_000;
  const probeIntervalMs = options.probeIntervalMs ?? 5_000;
  const failOpen = options.failOpen ?? false;
  const now = options.now ?? Date.now;
  let running = true;
  const sleepers = new Set<() => void>();
  // A wait that stop() cuts short, so shutting down never waits out a retry or probe interval.
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      sleepers.add(done);
    });
  let stopCurrent: (() => Promise<void>) | undefined;
  let consumer: Consumer | undefined;
  // The consumer sequence of the last message applied: the server's `delivered.stream_seq` moves past
  // events of other subjects, its consumer sequence counts only what it sent us.
  let lastDelivered = 0;
  let confirmedAt: number | undefined;
  let loaded = false;
  let markReady!: () => void;
  const caughtUp = new Promise<void>((resolve) => (markReady = resolve));
  const prune = setInterval(() => list.prune(), 60_000);
  prune.unref();

  // Warnings while the stream cannot be read: the first at once, then 1 s, 2 s, 4 s … up to the cap,
  // and one line when it can be read again.
  let troubleSince: number | undefined;
  let failures = 0;
  let nextWarnAt = 0;
  let warnIntervalMs = firstWarnIntervalMs;

  function failed(err: unknown): void {
    const t = now();
    troubleSince ??= t;
    failures += 1;
    if (t < nextWarnAt) return;
    logger.warn({ err, failures, forMs: t - troubleSince, current: isCurrent(), failOpen }, 'cannot follow revocations; retrying');
    nextWarnAt = t + warnIntervalMs;
    warnIntervalMs = Math.min(warnIntervalMs * 2, maxWarnIntervalMs);
  }

  function confirmed(): void {
    const t = now();
    confirmedAt = t;
    if (!loaded) {
      loaded = true;
      markReady();
    }
    if (troubleSince !== undefined) {
      logger.info({ failures, afterMs: t - troubleSince }, 'following revocations again');
      troubleSince = undefined;
      failures = 0;
      nextWarnAt = 0;
      warnIntervalMs = firstWarnIntervalMs;
    }
  }

  function isCurrent(): boolean {
    return confirmedAt !== undefined && now() - confirmedAt <= maxStalenessMs;
  }

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
    const c = await js.consumers.get(streamName(ns, 'auth'), {
      filter_subjects: revocationSubjects(ns),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(Date.now() - lookbackMs).toISOString(),
    });
    consumer = c;
    lastDelivered = 0;
    if ((await c.info(true)).num_pending === 0) confirmed();
    const messages = await c.consume();
    stopCurrent = async () => void (await messages.close());
    for await (const m of messages) {
      try {
        apply(m.headers, m.data);
      } catch (err) {
        logger.error({ err, seq: m.seq }, 'could not apply a revocation event');
      }
      lastDelivered = m.info.deliverySequence;
      if (m.info.pending === 0) confirmed();
      if (!running) break;
    }
  }

  // A quiet stream sends nothing: the follower asks the server, now and then, whether anything is left
  // to read. An answer that nothing is (and that we applied what it delivered) keeps the list current;
  // a lost connection or stream makes these questions fail, and the list goes stale after maxStalenessMs.
  async function probe(): Promise<void> {
    const c = consumer;
    if (!c) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      const info = await Promise.race([
        c.info(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer from JetStream')), Math.max(probeIntervalMs, retryDelayMs));
        }),
      ]);
      if (info.num_pending === 0 && info.delivered.consumer_seq <= lastDelivered) confirmed();
    } catch (err) {
      if (!running) return;
      failed(err);
      // The client library re-creates a lost consumer on its own schedule (up to its 30 s pull expiry);
      // once the list is stale, following again from scratch is quicker and re-applies nothing harmful.
      if (!isCurrent()) restart();
    } finally {
      clearTimeout(timer);
    }
  }

  function restart(): void {
    const close = stopCurrent;
    stopCurrent = undefined;
    consumer = undefined;
    void close?.().catch(() => undefined);
  }

  const probing = (async () => {
    while (running) {
      await sleep(isCurrent() ? probeIntervalMs : retryDelayMs);
      if (running && loaded) await probe();
    }
  })();

  const loop = (async () => {
    while (running) {
      try {
        await follow();
      } catch (err) {
        if (!running) break;
        failed(err);
      }
      consumer = undefined;
      // Following again re-reads the lookback window: applying a revocation twice changes nothing.
      if (running) await sleep(retryDelayMs);
    }
  })();

  const timeoutMs = options.readyTimeoutMs ?? 10_000;
  const ready = Promise.race([
    caughtUp,
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        if (failOpen) logger.warn({ timeoutMs }, 'revocations not caught up yet; serving without them (COFFER_REVOCATION_FAIL_OPEN)');
        else logger.warn({ timeoutMs }, 'revocations not caught up yet; authenticated calls answer UNAVAILABLE until they are');
        resolve();
      }, timeoutMs);
      t.unref();
      void caughtUp.then(() => clearTimeout(t));
    }),
  ]);

  const check: RevocationCheck = {
    isRevoked: (principal) => list.isRevoked(principal),
    assertCurrent() {
      if (failOpen || isCurrent()) return;
      throw new CofferError('unavailable', loaded ? 'revocation list not current; retry later' : REVOCATIONS_NOT_LOADED);
    },
  };

  return {
    list,
    check,
    isCurrent,
    ready,
    async stop() {
      running = false;
      clearInterval(prune);
      for (const wake of [...sleepers]) wake();
      await stopCurrent?.().catch(() => undefined);
      await Promise.all([loop, probing]);
    },
  };
}

/** Options of {@link startTokenVerification}. */
export interface TokenVerificationOptions {
  /** `startupWaitMs` bounds the wait for auth's JWKS at start-up (`COFFER_STARTUP_WAIT_MS`, default 60 s). */
  runtime: { nc: NatsConnection; namespace: MessagingNamespace; logger: Logger; startupWaitMs?: number };
  issuer: string;
  /** The verifying service's name, the audience its tokens must carry. */
  audience: string;
  authAddress: string;
  /** Kinds of token the service takes; default service tokens only. */
  acceptedKinds?: readonly TokenKind[];
  /** Channel credentials for fetching the JWKS from auth (mutual TLS). */
  credentials?: grpc.ChannelCredentials;
  /** Accept tokens while the revocation list is not current (`COFFER_REVOCATION_FAIL_OPEN`); see {@link WatchRevocationsOptions.failOpen}. */
  failOpen?: boolean;
}

/**
 * The token verifier every service puts in front of its gRPC server: auth's JWKS (cached) plus the
 * revocations followed from auth's events. Waits for auth's JWKS first, retrying with back-off for up
 * to `runtime.startupWaitMs` (then fails naming `AUTH_ADDRESS`), so a service never starts unable to
 * check any token. Resolves once the revocations have caught up, or after the ready timeout: until
 * they have, authenticated calls answer UNAVAILABLE (public ones still work).
 */
export async function startTokenVerification(
  options: TokenVerificationOptions,
): Promise<{ verifier: TokenVerifier; stop(): Promise<void>; ready(): Promise<void> }> {
  const { runtime } = options;
  const fetchJwks = jwksFromAuth(options.authAddress, options.credentials);
  // The first fetch doubles as the verifier's first key set, so auth is not asked twice.
  let primed: { keys: JWK[] } | undefined = await waitForDependency(() => fetchJwks(), {
    what: "auth's JWKS",
    setting: 'AUTH_ADDRESS',
    totalMs: runtime.startupWaitMs ?? DEFAULT_STARTUP_WAIT_MS,
    logger: runtime.logger,
  });
  const watch = watchRevocations({ nc: runtime.nc, namespace: runtime.namespace, logger: runtime.logger, failOpen: options.failOpen });
  await watch.ready;
  const verifier = createTokenVerifier({
    issuer: options.issuer,
    audience: options.audience,
    fetchJwks: async () => {
      const first = primed;
      primed = undefined;
      return first ?? fetchJwks();
    },
    acceptedKinds: options.acceptedKinds,
    revocations: watch.check,
  });
  return {
    verifier,
    stop: () => watch.stop(),
    // The key set was loaded before this resolved; tokens can be checked while the revocations are current.
    ready: async () => watch.check.assertCurrent?.(),
  };
}
