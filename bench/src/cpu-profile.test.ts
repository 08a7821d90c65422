import { describe, expect, it } from 'vitest';
import { frameOrigin, topFunctions, topOrigins, type CpuProfile } from './cpu-profile';

const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 3, 4] },
    { id: 2, callFrame: frame('(idle)') },
    { id: 3, callFrame: frame('writeGeneric', 'node:internal/stream_base_commons', 9) },
    { id: 4, callFrame: frame('query', 'file:///repo/node_modules/pg/lib/client.js', 499) },
    { id: 5, callFrame: frame('hydrate', 'file:///repo/dist/apps/secrets/main.js', 10) },
  ],
  samples: [2, 2, 3, 4, 3, 5, 9],
  timeDeltas: [10, 10, 10, 10, 10, 10, 10],
};

describe('a CPU profile summary', () => {
  it('names where a frame comes from', () => {
    expect(frameOrigin('file:///r/node_modules/@grpc/grpc-js/build/src/server.js', 'x')).toBe('@grpc/grpc-js');
    expect(frameOrigin('file:///r/node_modules/pg/lib/client.js', 'x')).toBe('pg');
    expect(frameOrigin('node:internal/stream_base_commons', 'x')).toBe('node:internal/stream_base_commons');
    expect(frameOrigin('file:///r/libs/event-store/src/append.ts', 'x')).toBe('libs/event-store');
    expect(frameOrigin('', '(garbage collector)')).toBe('(garbage collector)');
  });

  it('shares self time between functions and origins, the largest first, skipping unknown nodes', () => {
    const fns = topFunctions(profile);
    expect(fns[0]).toEqual({ name: '(idle)', selfShare: 2 / 6 });
    expect(fns[1]).toEqual({ name: 'writeGeneric node:internal/stream_base_commons:10', selfShare: 2 / 6 });
    expect(fns.map((f) => f.name)).toContain('query pg:500');
    expect(topOrigins(profile, 2).map((o) => o.name)).toEqual(['(idle)', 'node:internal/stream_base_commons']);
  });
});
