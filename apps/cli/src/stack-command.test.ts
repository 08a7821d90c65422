import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { serviceCommand } from './stack';

describe('serviceCommand: how the stack launcher runs a service', () => {
  it('runs the TypeScript through tsx by default, after the telemetry preload', () => {
    const args = serviceCommand('secrets');
    expect(args.slice(0, 3)).toEqual(['--import', 'tsx', '--import']);
    expect(args[3]).toMatch(/libs\/telemetry\/src\/preload\.ts$/);
    expect(args[4]).toMatch(/apps[/\\]secrets[/\\]src[/\\]main\.ts$/);
  });

  it('runs the bundle from the bundle folder when one is given, node options first, the bundled preload before it', () => {
    expect(serviceCommand('sync-worker', '/opt/coffer/dist', ['--cpu-prof'])).toEqual([
      '--cpu-prof',
      '--import',
      pathToFileURL(join('/opt/coffer/dist', 'preload.mjs')).href,
      join('/opt/coffer/dist', 'apps', 'sync-worker', 'main.js'),
    ]);
  });
});
