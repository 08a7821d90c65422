import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CofferError } from '@coffer/contracts';
import type { SavedStack, StackState } from '../dev-stack';
import type { CofferHome } from '../home';

/** Where the CLI finds the services. */
export interface Endpoints {
  auth: string;
  config: string;
  'sync-worker': string;
}

/** What `coffer login` caches in COFFER_HOME (mode 0600): the endpoints and the application token. */
export interface CachedLogin {
  endpoints: Endpoints;
  clientId: string;
  accessToken: string;
  /** ISO time the token expires. */
  expiresAt: string;
}

export const loginFileName = 'cli-login.json';

async function readJson<T>(file: string): Promise<T | undefined> {
  return readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as T,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
}

/** The running stack's endpoints: COFFER_*_ADDRESS when set, else the state file `npm start` writes. */
export async function resolveEndpoints(home: CofferHome, env: NodeJS.ProcessEnv): Promise<Endpoints> {
  const state = await readJson<StackState>(home.stateFile);
  const pick = (name: keyof Endpoints, variable: string) => {
    const value = env[variable] || state?.endpoints[name];
    if (!value) throw new CofferError('failed_precondition', `no ${name} endpoint: start the stack (npm start) with COFFER_HOME=${home.dir}, or set ${variable}`);
    return value;
  };
  return { auth: pick('auth', 'COFFER_AUTH_ADDRESS'), config: pick('config', 'COFFER_CONFIG_ADDRESS'), 'sync-worker': pick('sync-worker', 'COFFER_SYNC_ADDRESS') };
}

/** What the development stack saved: its credentials and the application it created (absent elsewhere). */
export async function readSavedStack(home: CofferHome): Promise<SavedStack | undefined> {
  return readJson<SavedStack>(home.credentialsFile);
}

/** The running stack's state file, if a stack runs from this home. */
export async function readStackState(home: CofferHome): Promise<StackState | undefined> {
  return readJson<StackState>(home.stateFile);
}

/** Caches a login, readable by its owner only. */
export async function saveLogin(home: CofferHome, login: CachedLogin): Promise<string> {
  const file = join(home.dir, loginFileName);
  // Removed first: writeFile's mode applies only to a file it creates.
  await rm(file, { force: true });
  await writeFile(file, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  return file;
}

/** The cached login, refused when missing or expired (with what to do). */
export async function loadLogin(home: CofferHome, now: Date): Promise<CachedLogin> {
  const login = await readJson<CachedLogin>(join(home.dir, loginFileName));
  if (!login) throw new CofferError('unauthenticated', 'not logged in: run `coffer login` first');
  if (Date.parse(login.expiresAt) <= now.getTime() + 5_000) throw new CofferError('unauthenticated', 'the cached token has expired: run `coffer login` again');
  return login;
}

/** The operator's client credentials of a development stack (connector definitions, sync jobs). */
export function operatorCredentials(saved: SavedStack | undefined, env: NodeJS.ProcessEnv): { clientId: string; clientSecret: string } {
  if (env.COFFER_OPERATOR_CLIENT_ID && env.COFFER_OPERATOR_CLIENT_SECRET) return { clientId: env.COFFER_OPERATOR_CLIENT_ID, clientSecret: env.COFFER_OPERATOR_CLIENT_SECRET };
  const operator = saved?.credentials.clients.operator;
  if (!operator) throw new CofferError('failed_precondition', 'this needs operator credentials: COFFER_OPERATOR_CLIENT_ID and COFFER_OPERATOR_CLIENT_SECRET, or a development stack\'s COFFER_HOME');
  return operator;
}
