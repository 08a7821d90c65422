import type pg from 'pg';

/** @internal Options of `startOutboxListener`. */
export interface OutboxListenerOptions {
  channel: string;
  /** A new, unconnected client for each attempt. */
  connect: () => pg.Client;
  /** A notification arrived on the channel. */
  onNotify: () => void;
  /** LISTEN is in place (first time or after a reconnect). */
  onListening: () => void;
  /** The connection could not be opened or was lost; another attempt follows after a back-off. */
  onDown: (err: unknown) => void;
  /** First reconnect delay; doubles per failed attempt up to `maxRetryDelayMs`. */
  retryDelayMs: number;
  maxRetryDelayMs: number;
}

/** @internal A LISTEN connection that reconnects by itself until stopped. */
export interface OutboxListener {
  /** Whether LISTEN is in place now: while it is not, notifications can be missed. */
  listening(): boolean;
  stop(): Promise<void>;
}

/**
 * @internal Keeps one dedicated connection LISTENing on a channel. Every failure (connect, LISTEN,
 * an 'error' or 'end' of the connection) is reported, then retried with exponential back-off and
 * jitter, so a Postgres restart or a terminated backend never ends the process or the listener.
 */
export function startOutboxListener(options: OutboxListenerOptions): OutboxListener {
  let client: pg.Client | undefined;
  let isListening = false;
  let stopped = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;

  const report = (err: unknown) => {
    try {
      options.onDown(err);
    } catch {
      // A failing logger must not stop the reconnects.
    }
  };

  function scheduleReconnect(): void {
    if (stopped || timer) return;
    const ceiling = Math.min(options.maxRetryDelayMs, options.retryDelayMs * 2 ** Math.min(failures, 20));
    failures++;
    // Jitter: replicas that lost the server together do not all come back in the same millisecond.
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
    timer = setTimeout(() => {
      timer = undefined;
      void open();
    }, delay);
    timer.unref?.();
  }

  function lost(c: pg.Client, err: unknown): void {
    if (client !== c) return;
    client = undefined;
    isListening = false;
    c.end().catch(() => undefined);
    if (stopped) return;
    report(err);
    scheduleReconnect();
  }

  async function open(): Promise<void> {
    if (stopped) return;
    let c: pg.Client;
    try {
      c = options.connect();
    } catch (err) {
      report(err);
      scheduleReconnect();
      return;
    }
    client = c;
    // Until LISTEN is in place, connect() or the LISTEN query rejects with the cause (pg settles
    // both when the connection fails), which says more than a bare 'end'; the listeners are still
    // attached at once, since an 'error' event without one would end the process.
    let ready = false;
    let early: unknown;
    const fail = (err: unknown) => {
      if (ready) lost(c, err);
      else early ??= err;
    };
    c.on('error', fail);
    c.on('end', () => fail(new Error('the LISTEN connection to Postgres ended')));
    c.on('notification', (n) => {
      if (n.channel === options.channel) options.onNotify();
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${c.escapeIdentifier(options.channel)}`);
    } catch (err) {
      lost(c, err);
      return;
    }
    if (early !== undefined) {
      lost(c, early);
      return;
    }
    ready = true;
    // Stopped (or lost) while connecting: whoever did that has ended this client already.
    if (client !== c || stopped) return;
    isListening = true;
    failures = 0;
    try {
      options.onListening();
    } catch {
      // Told, not asked: a failing callback must not undo the connection.
    }
  }

  void open();

  return {
    listening: () => isListening,
    async stop() {
      stopped = true;
      isListening = false;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const c = client;
      client = undefined;
      await c?.end().catch(() => undefined);
    },
  };
}
