// Bundles apps into <outdir>/apps/<name>/main.js and the telemetry preload into <outdir>/preload.mjs
// (outdir: dist): workspace libs are inlined; npm
// dependencies (the root's and the app's own, e.g. the secrets service's pkcs11js with its native
// .node module) stay external and load from node_modules at run time. Files an app reads at run time
// (its package.json's `assets`, e.g. the edge's widget and OpenAPI document) are copied next to its
// main.js. Exits 1 when any bundle fails.
//   node tools/build-app.mjs auth secrets config sync-worker [--outdir dist]
import { build } from 'esbuild';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outFlag = args.indexOf('--outdir');
const outdir = outFlag >= 0 ? resolve(args[outFlag + 1] ?? '') : join(root, 'dist');
const apps = args.filter((a, i) => !a.startsWith('--') && (outFlag < 0 || i !== outFlag + 1));
if (apps.length === 0 || (outFlag >= 0 && !args[outFlag + 1])) {
  console.error('usage: node tools/build-app.mjs <app>... [--outdir <dir>]');
  process.exit(2);
}

const dependencies = (file) => Object.keys(JSON.parse(readFileSync(file, 'utf8')).dependencies ?? {});

const failed = [];
for (const app of apps) {
  const manifest = join(root, 'apps', app, 'package.json');
  if (!existsSync(manifest)) {
    console.error(`${app}: no such app (apps/${app}/package.json)`);
    failed.push(app);
    continue;
  }
  try {
    await build({
      entryPoints: [join(root, 'apps', app, 'src/main.ts')],
      outfile: join(outdir, 'apps', app, 'main.js'),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      sourcemap: true,
      external: [...dependencies(join(root, 'package.json')), ...dependencies(manifest)],
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      logLevel: 'warning',
    });
    const assets = JSON.parse(readFileSync(manifest, 'utf8')).assets ?? [];
    for (const asset of assets) cpSync(join(root, 'apps', app, asset), join(outdir, 'apps', app, asset), { recursive: true });
    console.log(`${app}: ${join(outdir, 'apps', app, 'main.js')}`);
  } catch (err) {
    // esbuild has printed the errors already.
    console.error(`${app}: bundle failed (${err.errors?.length ?? 1} error(s))`);
    failed.push(app);
  }
}
// The telemetry preload every service starts with (`node --import ./dist/preload.mjs`): it must
// load before the service's bundle, so it is a file of its own.
try {
  await build({
    entryPoints: [join(root, 'libs/telemetry/src/preload.ts')],
    outfile: join(outdir, 'preload.mjs'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    external: dependencies(join(root, 'package.json')),
    logLevel: 'warning',
  });
} catch (err) {
  console.error(`preload: bundle failed (${err.errors?.length ?? 1} error(s))`);
  failed.push('preload');
}
if (failed.length) {
  console.error(`build failed for: ${failed.join(', ')}`);
  process.exit(1);
}
