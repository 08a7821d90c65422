// Runs `npm run generate` when libs/contracts/src/gen is missing or older than its inputs (proto/ and
// the generator script): entry points a user runs (npm start) need the generated code, which is not
// committed; when it is already up to date this costs a few file stats instead of an Nx start-up.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const marker = join(root, 'libs/contracts/src/gen/descriptor.ts');
const inputs = [join(root, 'proto'), join(root, 'libs/contracts/scripts')];

function newestMtime(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((max, name) => Math.max(max, newestMtime(join(path, name))), stat.mtimeMs);
}

const stale = !existsSync(marker) || inputs.some((dir) => newestMtime(dir) > statSync(marker).mtimeMs);
if (stale) {
  console.log('Generating the gRPC code (libs/contracts/src/gen) from proto/ …');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const run = spawnSync(npm, ['run', '--silent', 'generate'], { cwd: root, stdio: 'inherit', env: { NX_TUI: 'false', ...process.env } });
  if (run.status !== 0) {
    console.error('npm run generate failed: the services cannot start without the generated code.');
    process.exit(run.status ?? 1);
  }
}
