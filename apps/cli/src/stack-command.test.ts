import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serviceCommand } from './stack';

describe('serviceCommand: how the stack launcher runs a service', () => {
  it('runs the TypeScript through tsx by default', () => {
    const args = serviceCommand('secrets');
    expect(args.slice(0, 2)).toEqual(['--import', 'tsx']);
    expect(args[2]).toMatch(/apps[/\\]secrets[/\\]src[/\\]main\.ts$/);
  });

  it('runs the bundle from the bundle folder when one is given, node options first', () => {
    expect(serviceCommand('sync-worker', '/opt/coffer/dist', ['--cpu-prof'])).toEqual(['--cpu-prof', join('/opt/coffer/dist', 'apps', 'sync-worker', 'main.js')]);
  });
});
