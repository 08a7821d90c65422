// Refuses to go on under a Node version outside package.json `engines.node`, with a message that
// says what to install. npm itself only warns (engine-strict stays off: @nats-io/nuid declares
// Node >= 22 but runs on 20, see README "Install"), so `npm test` and `npm start` check here.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const range = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node;

/** Whether `version` (x.y.z) is in `range`, a union of `^x.y.z` and `>=x[.y.z]` terms (the forms engines uses here). */
export function satisfies(version, text) {
  const [major, minor, patch] = version.split('.').map(Number);
  const at = (m, n, p) => major * 1e8 + minor * 1e4 + patch >= m * 1e8 + n * 1e4 + p;
  return text.split('||').some((term) => {
    const m = /^\s*(\^|>=)\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$/.exec(term);
    if (!m) throw new Error(`package.json engines.node: cannot read "${term.trim()}" (use ^x.y.z or >=x terms)`);
    const [want, wantMinor, wantPatch] = [Number(m[2]), Number(m[3] ?? 0), Number(m[4] ?? 0)];
    return m[1] === '^' ? major === want && at(want, wantMinor, wantPatch) : at(want, wantMinor, wantPatch);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const version = process.versions.node;
  if (!satisfies(version, range)) {
    console.error(`Coffer needs Node ${range}; this is Node ${version}. Install a supported version (\`nvm use\` reads .nvmrc).`);
    process.exit(1);
  }
}
