import * as grpc from '@grpc/grpc-js';
import { ERROR_DETAILS_KEY } from '@coffer/rpc';

/** How a raw call was answered: its status, message, error-detail fields and time taken. */
export interface Answer<Res> {
  status: grpc.status;
  message: string;
  /** The error details' fields, in order. */
  fields: string[];
  ms: number;
  res?: Res;
}

type Messages = Record<string, { fromPartial(v: unknown): unknown }>;
// Each raw client remembers its generated messages, so a partial request is completed the way ts-proto expects.
const messagesOf = new WeakMap<grpc.Client, Messages>();

/** A plain grpc-js client (no Coffer middleware) whose requests are completed from `messages`. */
export function rawClient<C extends grpc.Client>(
  Ctor: new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => C,
  address: string,
  messages: unknown,
  options?: grpc.ChannelOptions,
): C {
  const c = new Ctor(address, grpc.credentials.createInsecure(), options);
  messagesOf.set(c, messages as Messages);
  return c;
}

function fieldsOf(metadata: grpc.Metadata | undefined): string[] {
  const raw = metadata?.get(ERROR_DETAILS_KEY)[0];
  if (raw === undefined) return [];
  try {
    const parsed = JSON.parse(Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw)) as { field: string }[];
    return parsed.map((d) => d.field);
  } catch {
    return [];
  }
}

/** One unary call with an optional bearer token, Origin header and deadline, answered as an {@link Answer}, never thrown. */
export function call<Res>(client: grpc.Client, method: string, partial: unknown, token?: string, origin?: string, deadlineMs = 90_000): Promise<Answer<Res>> {
  const type = messagesOf.get(client)![`${method[0]!.toUpperCase()}${method.slice(1)}Request`]!;
  const req = type.fromPartial(partial);
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  if (origin !== undefined) metadata.set('origin', origin);
  const started = performance.now();
  return new Promise((resolve) => {
    (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Res) => void) => void>)[method]!(
      req,
      metadata,
      { deadline: Date.now() + deadlineMs },
      (err, res) => {
        const ms = performance.now() - started;
        resolve(err ? { status: err.code, message: err.details, fields: fieldsOf(err.metadata), ms } : { status: grpc.status.OK, message: '', fields: [], ms, res });
      },
    );
  });
}

/** The response of a call that must succeed. */
export async function ok<Res>(p: Promise<Answer<Res>>): Promise<Res> {
  const a = await p;
  if (a.status !== grpc.status.OK) throw new Error(`expected OK, got ${grpc.status[a.status]}: ${a.message}`);
  return a.res!;
}
