// `npm run docs:config`: rewrites the configuration reference in README.md from the settings schemas.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withConfigReference } from './config-reference';

const readme = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'README.md');
const before = await readFile(readme, 'utf8');
const after = withConfigReference(before);
if (after === before) {
  console.log('README.md: the configuration reference is up to date');
} else {
  await writeFile(readme, after);
  console.log('README.md: configuration reference rewritten');
}
