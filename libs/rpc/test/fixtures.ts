import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { pino, type Logger } from 'pino';
import { TOKEN_TYPES, type ServiceRole } from '@coffer/tokens';
import { authV1, CofferError } from '@coffer/contracts';

export const ISSUER = 'coffer-auth';

/** A local EdDSA signing key and its JWKS, standing in for the auth service's keys. */
export interface TestIssuer {
  jwks: { keys: JWK[] };
  sign(options: { role: ServiceRole; subject?: string; audience: string; ttlSeconds?: number }): Promise<string>;
  /** Signs any claims under any `typ` with the issuer's key, for tokens of the organization kinds. */
  signClaims(typ: string, claims: Record<string, unknown>): Promise<string>;
}

/** Generates a fresh Ed25519 key and signs service tokens the way apps/auth does. */
export async function createTestIssuer(kid = 'test-key'): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' };
  return {
    jwks: { keys: [publicJwk] },
    sign: ({ role, subject, audience, ttlSeconds = 600 }) => signWith(privateKey, kid, { role, subject: subject ?? `${role}-client`, audience, ttlSeconds }),
    signClaims: (typ, claims) => {
      const iat = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: ISSUER, jti: `jti-${Math.random().toString(36).slice(2)}`, iat, nbf: iat, exp: iat + 600, ...claims })
        .setProtectedHeader({ alg: 'EdDSA', kid, typ })
        .sign(privateKey);
    },
  };
}

async function signWith(key: CryptoKey, kid: string, c: { role: string; subject: string; audience: string; ttlSeconds: number }): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return new SignJWT({ role: c.role })
    .setProtectedHeader({ alg: 'EdDSA', kid, typ: TOKEN_TYPES.service })
    .setIssuer(ISSUER)
    .setSubject(c.subject)
    .setAudience(c.audience)
    .setJti(`jti-${Math.random().toString(36).slice(2)}`)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + c.ttlSeconds)
    .sign(key);
}

/** A pino logger whose JSON lines are kept in memory. */
export function captureLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const raw: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void raw.push(line) });
  return {
    logger,
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => raw.join(''),
  };
}

/** What a raw unary call returned, status included, without any of @coffer/rpc's client mapping. */
export interface RawResult<Res> {
  status: grpc.status;
  message: string;
  trailers?: grpc.Metadata;
  res?: Res;
}

/** Calls a method of a grpc-js client directly, to see the exact status and trailers the server sent. */
export function rawUnary<Req, Res>(client: grpc.Client, method: string, req: Req, metadata = new grpc.Metadata()): Promise<RawResult<Res>> {
  const fn = (client as unknown as Record<string, (r: Req, m: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r?: Res) => void) => void>)[method]!;
  return new Promise((resolve) => {
    fn.call(client, req, metadata, { deadline: Date.now() + 5_000 }, (err, res) =>
      resolve(err ? { status: err.code, message: err.details, trailers: err.metadata } : { status: grpc.status.OK, message: '', res }),
    );
  });
}

/** Metadata with `authorization: Bearer <token>`. */
export function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

const loaderOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

function loadClient(file: string, path: string[]): new (address: string, creds: grpc.ChannelCredentials) => grpc.Client {
  let node: unknown = grpc.loadPackageDefinition(protoLoader.loadSync(file, loaderOptions));
  for (const p of path) node = (node as Record<string, unknown>)[p];
  return node as new (address: string, creds: grpc.ChannelCredentials) => grpc.Client;
}

/** grpc.health.v1.Health/Check through a client built from grpc-health-check's own proto. */
export async function healthCheck(address: string, service = ''): Promise<RawResult<{ status: string }>> {
  const Health = loadClient(healthProtoPath, ['grpc', 'health', 'v1', 'Health']);
  const client = new Health(address, grpc.credentials.createInsecure());
  try {
    return await rawUnary<{ service: string }, { status: string }>(client, 'Check', { service });
  } finally {
    client.close();
  }
}

const require = createRequire(import.meta.url);
const reflectionProto = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

/** One response of grpc.reflection.v1.ServerReflection/ServerReflectionInfo (snake_case, as loaded). */
export interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** Sends one request on the reflection v1 bidi stream and returns the first response. */
export async function reflect(address: string, request: Record<string, unknown>): Promise<ReflectionResponse> {
  const Reflection = loadClient(reflectionProto, ['grpc', 'reflection', 'v1', 'ServerReflection']);
  const client = new Reflection(address, grpc.credentials.createInsecure()) as grpc.Client & {
    ServerReflectionInfo(options: Partial<grpc.CallOptions>): grpc.ClientDuplexStream<unknown, ReflectionResponse>;
  };
  try {
    return await new Promise<ReflectionResponse>((resolve, reject) => {
      const call = client.ServerReflectionInfo({ deadline: Date.now() + 5_000 });
      call.on('data', (res: ReflectionResponse) => {
        resolve(res);
        call.end();
      });
      call.on('error', reject);
      call.write({ host: '', ...request });
    });
  } finally {
    client.close();
  }
}

/**
 * The AuthService methods a test's small auth server does not serve: each answers FAILED_PRECONDITION,
 * so a test that strays onto one fails loudly instead of hanging.
 */
export function unservedAuthMethods(): Record<string, { permission: 'public'; handler: () => Promise<never> }> {
  const served = new Set(['issueServiceToken', 'getJwks']);
  return Object.fromEntries(
    Object.keys(authV1.AuthServiceService)
      .filter((k) => !served.has(k))
      .map((k) => [k, { permission: 'public' as const, handler: () => Promise.reject(new CofferError('failed_precondition', `${k} is not served by this test server`)) }]),
  );
}
