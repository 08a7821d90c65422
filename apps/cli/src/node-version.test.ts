import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const engines = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;

/** Asks tools/check-node.mjs (the check `npm test` and `npm start` run first) whether a version is supported. */
function supported(version: string): boolean {
  const script = `import { satisfies } from ${JSON.stringify(join(root, 'tools/check-node.mjs'))}; process.stdout.write(String(satisfies(${JSON.stringify(version)}, ${JSON.stringify(engines)})))`;
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim() === 'true';
}

describe('the Node version is stated and enforced', () => {
  it('accepts the Node this runs on, and the version .nvmrc names', () => {
    expect(() => execFileSync(process.execPath, [join(root, 'tools/check-node.mjs')])).not.toThrow();
    const nvmrc = readFileSync(join(root, '.nvmrc'), 'utf8').trim();
    // .nvmrc names a release line (e.g. 20): its newest releases must be supported.
    expect(supported(`${nvmrc.split('.')[0]}.99.0`)).toBe(true);
  });

  it('refuses versions the toolchain cannot run on', () => {
    expect([supported('20.18.3'), supported('21.7.0'), supported('22.12.0'), supported('18.20.0')]).toEqual([false, false, false, false]);
    expect([supported('20.19.0'), supported('22.13.0'), supported('24.0.0')]).toEqual([true, true, true]);
  });
});
