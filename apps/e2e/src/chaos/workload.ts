import * as grpc from '@grpc/grpc-js';
import type { configV1 } from '@coffer/contracts';
import { callRetrying, type ChaosClients } from './clients';

/** The kinds of write the clients make; every one but `rename` and `delete` sends new secret values. */
export type WriteKind = 'create' | 'rotate' | 'rotate-both' | 'rename' | 'delete';

/** The two secret values of a chaos actor. */
export interface SecretValues {
  apiToken: string;
  clientSecret: string;
}

/** The connector spec every chaos actor uses: two secret fields, one of them nested. */
export const chaosSpec = {
  type: 'object',
  required: ['url'],
  properties: {
    url: { type: 'string' },
    label: { type: 'string' },
    api_token: { type: 'string', airbyte_secret: true },
    credentials: { type: 'object', properties: { client_id: { type: 'string' }, client_secret: { type: 'string', airbyte_secret: true } } },
  },
} as const;

const MASK = '**********';

/** What the suite knows of one actor it wrote: enough to tell afterwards whether an acknowledged write was lost. */
export interface ActorTrack {
  actorId: string;
  workspaceId: string;
  /** Version and name as the client last saw them. */
  version: number;
  name: string;
  /** The client must read the actor again before its next write (an answer left its state unknown). */
  dirty: boolean;
  /** The client saw it deleted (acknowledged or read back as NOT_FOUND). */
  gone: boolean;
  /** Names (write tags) the actor may carry now: the last acknowledged write's and those of later writes whose outcome is unknown. */
  acceptable: Set<string>;
  lastAcked?: { tag: string; kind: WriteKind; version: number };
  /** A delete whose outcome is unknown: the actor may be gone. */
  deleteUnknown: boolean;
}

/** An acknowledged write: the service answered OK. */
export interface AckedWrite {
  kind: WriteKind;
  tag: string;
  actorId: string;
}

/** Everything one scenario tried and what it was told. */
export interface Ledger {
  scenario: string;
  /** The scenario's own workspaces (writer `w` writes in the `w % length`th). */
  workspaceIds: string[];
  definitionId: string;
  tried: number;
  acked: number;
  /** Answers that said the write was not made, by status name (e.g. ABORTED). */
  refused: Map<string, number>;
  /** Writes still unanswered (or answered UNAVAILABLE and the like) after every retry. */
  unknown: number;
  acks: AckedWrite[];
  /** When each acknowledgement arrived (ms since the epoch, in arrival order). */
  ackTimes: number[];
  actors: Map<string, ActorTrack>;
  /** Each write's tag and the secret values the actor holds once that write is applied. */
  values: Map<string, SecretValues>;
  /** Effects made more than once, found while writing (e.g. two OKs for one expected version). */
  duplicates: number;
}

/** An empty ledger of one scenario, writing actors of `definitionId` in `workspaceIds`. */
export function newLedger(scenario: string, workspaceIds: string[], definitionId: string): Ledger {
  return { scenario, workspaceIds, definitionId, tried: 0, acked: 0, refused: new Map(), unknown: 0, acks: [], ackTimes: [], actors: new Map(), values: new Map(), duplicates: 0 };
}

/** A small seeded PRNG (mulberry32): the same seed gives the same kill schedule and write mix. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function configJson(tag: string, v: { apiToken: string; clientSecret: string }): string {
  return JSON.stringify({ url: 'https://chaos.example.test/api', label: tag, api_token: v.apiToken, credentials: { client_id: 'chaos', client_secret: v.clientSecret } });
}

function fresh(tag: string, field: string): string {
  return `chaos-${tag}-${field}-${Math.random().toString(36).slice(2, 10)}`;
}

function recordAck(ledger: Ledger, write: AckedWrite): void {
  ledger.acked++;
  ledger.acks.push(write);
  ledger.ackTimes.push(Date.now());
}

function recordRefusal(ledger: Ledger, status: grpc.status): void {
  const name = grpc.status[status] ?? String(status);
  ledger.refused.set(name, (ledger.refused.get(name) ?? 0) + 1);
}

/** Creates one actor in `workspaceId`; returns its track when the create was acknowledged. */
export async function createActor(clients: ChaosClients, ledger: Ledger, tag: string, workspaceId: string): Promise<ActorTrack | undefined> {
  const values = { apiToken: fresh(tag, 'api'), clientSecret: fresh(tag, 'client') };
  ledger.values.set(tag, values);
  ledger.tried++;
  // request_id makes a retried create idempotent where the service supports it; older builds ignore the field.
  const req = { workspaceId, definitionId: ledger.definitionId, name: tag, configJson: configJson(tag, values), requestId: tag };
  const r = await callRetrying<configV1.CreateActorResponse>(clients.config, 'createActor', req, clients.operator);
  if (r.last.status === grpc.status.OK) {
    const actor = r.last.res!.actor!;
    const track: ActorTrack = { actorId: actor.actorId, workspaceId, version: actor.version, name: tag, dirty: false, gone: false, acceptable: new Set([tag]), lastAcked: { tag, kind: 'create', version: actor.version }, deleteUnknown: false };
    ledger.actors.set(actor.actorId, track);
    recordAck(ledger, { kind: 'create', tag, actorId: actor.actorId });
    return track;
  }
  if (r.sawUnknown) ledger.unknown++;
  else recordRefusal(ledger, r.last.status);
  return undefined;
}

/** Reads an actor again after an answer left its state unknown; leaves it dirty when it cannot be read. */
export async function refresh(clients: ChaosClients, track: ActorTrack): Promise<void> {
  const r = await callRetrying<configV1.GetActorResponse>(clients.config, 'getActor', { actorId: track.actorId }, clients.operator);
  if (r.last.status === grpc.status.OK) {
    track.version = r.last.res!.actor!.version;
    track.name = r.last.res!.actor!.name;
    track.dirty = false;
  } else if (r.last.status === grpc.status.NOT_FOUND) {
    track.gone = true;
    track.dirty = false;
  }
}

/** The request of an update of `kind` on `track`, and the secret values the actor holds once it is applied. */
export function updateRequest(track: ActorTrack, kind: 'rotate' | 'rotate-both' | 'rename', tag: string, current: SecretValues | undefined) {
  // Without known current values only a write of all-new values has a known outcome.
  const k = current ? kind : 'rotate-both';
  const next: SecretValues = {
    apiToken: k === 'rename' ? current!.apiToken : fresh(tag, 'api'),
    clientSecret: k === 'rotate-both' ? fresh(tag, 'client') : current!.clientSecret,
  };
  const sent = { apiToken: k === 'rename' ? MASK : next.apiToken, clientSecret: k === 'rotate-both' ? next.clientSecret : MASK };
  return { req: { actorId: track.actorId, expectedVersion: track.version, name: tag, configJson: configJson(tag, sent) }, next, kind: k };
}

/** One update (new secret values or a masked rename) at the version the client last saw. */
export async function updateActor(clients: ChaosClients, ledger: Ledger, track: ActorTrack, kind: 'rotate' | 'rotate-both' | 'rename', tag: string): Promise<grpc.status> {
  const { req, next, kind: k } = updateRequest(track, kind, tag, ledger.values.get(track.name));
  ledger.values.set(tag, next);
  ledger.tried++;
  const r = await callRetrying<configV1.UpdateActorResponse>(clients.config, 'updateActor', req, clients.operator);
  if (r.last.status === grpc.status.OK) {
    const actor = r.last.res!.actor!;
    track.version = actor.version;
    track.name = tag;
    track.acceptable = new Set([tag]);
    track.lastAcked = { tag, kind: k, version: actor.version };
    recordAck(ledger, { kind: k, tag, actorId: track.actorId });
    return r.last.status;
  }
  if (r.sawUnknown) {
    ledger.unknown++;
    track.acceptable.add(tag);
  } else recordRefusal(ledger, r.last.status);
  track.dirty = true;
  return r.last.status;
}

/** Deletes an actor at the version the client last saw. */
export async function deleteActor(clients: ChaosClients, ledger: Ledger, track: ActorTrack, tag: string): Promise<void> {
  ledger.tried++;
  const r = await callRetrying(clients.config, 'deleteActor', { actorId: track.actorId, expectedVersion: track.version }, clients.operator);
  if (r.last.status === grpc.status.OK) {
    track.gone = true;
    track.lastAcked = { tag, kind: 'delete', version: track.version + 1 };
    recordAck(ledger, { kind: 'delete', tag, actorId: track.actorId });
    return;
  }
  if (r.sawUnknown) {
    ledger.unknown++;
    track.deleteUnknown = true;
  } else recordRefusal(ledger, r.last.status);
  track.dirty = true;
}

/** Options of {@link runWriters}. */
export interface WritersOptions {
  clients: ChaosClients;
  ledger: Ledger;
  writers: number;
  /** Writes to make in all. */
  total: number;
  random: () => number;
  /** Checked before each write: true stops the writers early. */
  stop?: () => boolean;
  /** Paces the writes to about this many per second (all writers together). */
  ratePerSecond?: number;
}

const MIN_ACTORS = 4;
const MAX_ACTORS = 40;

/** Concurrent clients, each writing over actors of its own (so the last acknowledged write of each actor is known). */
export async function runWriters(options: WritersOptions): Promise<void> {
  const { clients, ledger, random } = options;
  let issued = 0;
  const startedAt = Date.now();
  const take = async (): Promise<boolean> => {
    if (issued >= options.total || options.stop?.()) return false;
    const n = issued++;
    if (options.ratePerSecond) {
      const due = startedAt + (n * 1000) / options.ratePerSecond;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
    return true;
  };

  async function writer(w: number): Promise<void> {
    const mine: ActorTrack[] = [];
    const workspaceId = ledger.workspaceIds[w % ledger.workspaceIds.length]!;
    for (let seq = 0; await take(); seq++) {
      const tag = `${ledger.scenario}-w${w}-${seq}`;
      const live = mine.filter((a) => !a.gone);
      const r = random();
      if (live.length < MIN_ACTORS || (r < 0.08 && live.length < MAX_ACTORS)) {
        const track = await createActor(clients, ledger, tag, workspaceId);
        if (track) mine.push(track);
        continue;
      }
      const track = live[Math.floor(random() * live.length)]!;
      if (track.dirty) await refresh(clients, track);
      if (track.gone) {
        // Found deleted while reading it again: this write becomes a create.
        const created = await createActor(clients, ledger, tag, workspaceId);
        if (created) mine.push(created);
        continue;
      }
      if (r < 0.12 && live.length > MIN_ACTORS) await deleteActor(clients, ledger, track, tag);
      else await updateActor(clients, ledger, track, r < 0.57 ? 'rotate' : r < 0.82 ? 'rotate-both' : 'rename', tag);
    }
  }

  await Promise.all(Array.from({ length: options.writers }, (_, w) => writer(w)));
}

/**
 * Resolves with the time of the first acknowledgement after `since`; undefined after `timeoutMs`, or
 * as soon as `writing()` says no more writes will come.
 */
export async function firstAckAfter(ledger: Ledger, since: number, timeoutMs: number, writing: () => boolean): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // ackTimes grow in time order: walk back to the first one after `since`.
    let i = ledger.ackTimes.length;
    while (i > 0 && ledger.ackTimes[i - 1]! > since) i--;
    if (i < ledger.ackTimes.length) return ledger.ackTimes[i];
    if (Date.now() > deadline || !writing()) return undefined;
    await new Promise((r) => setTimeout(r, 50));
  }
}
