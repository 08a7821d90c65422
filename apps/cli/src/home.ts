import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** Where a development stack keeps everything it writes: credentials, keyring, databases, logs. */
export interface CofferHome {
  dir: string;
  /** Client credentials, signing key and what the first start created (mode 0600). */
  credentialsFile: string;
  /** The local KMS keyring the secrets service reads and writes rotations back to (mode 0600). */
  keyringFile: string;
  /** The embedded Postgres data directory. */
  postgresDir: string;
  /** The embedded NATS server's JetStream store. */
  natsDir: string;
  /** One log file per process. */
  logsDir: string;
  /** Present while a stack runs from this home: endpoints and process ids. */
  stateFile: string;
}

/** The home directory: `COFFER_HOME`, or `.coffer` in the working directory. */
export function cofferHome(cofferHomeSetting: string | undefined, cwd: string): CofferHome {
  const dir = resolve(cwd, cofferHomeSetting || '.coffer');
  return {
    dir,
    credentialsFile: join(dir, 'dev-credentials.json'),
    keyringFile: join(dir, 'local-keyring.json'),
    postgresDir: join(dir, 'postgres'),
    natsDir: join(dir, 'nats'),
    logsDir: join(dir, 'logs'),
    stateFile: join(dir, 'stack.json'),
  };
}

/**
 * Creates the home directory, readable by its owner only. Under root, Postgres runs as another user
 * that must reach its data directory inside: the home then lets others traverse it (0711) without
 * listing it, and every file in it stays 0600.
 */
export async function ensureHome(home: CofferHome, runsAsRoot: boolean): Promise<void> {
  await mkdir(home.dir, { recursive: true, mode: 0o700 });
  await chmod(home.dir, runsAsRoot ? 0o711 : 0o700);
  await mkdir(home.logsDir, { recursive: true, mode: 0o700 });
}
