/** The parts of a V8 `.cpuprofile` (as `--cpu-prof` writes it) that a summary needs. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

/** One line of a summary: a function (or a package) and its share of the samples. */
export interface ProfileLine {
  name: string;
  selfShare: number;
}

/** Where a frame comes from: a package of node_modules, a node internal, or a project file; V8's pseudo-frames as they are. */
export function frameOrigin(url: string, functionName: string): string {
  if (!url) return functionName || '(anonymous)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return url;
  const app = /(apps|libs)\/([^/]+)\//.exec(url);
  return app ? `${app[1]}/${app[2]}` : url.replace(/^file:\/\//, '');
}

function shares(profile: CpuProfile, key: (n: CpuProfile['nodes'][number]) => string, top: number): ProfileLine[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const time = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = Math.max(0, profile.timeDeltas[i] ?? 0);
    const node = byId.get(id);
    if (!node) return;
    total += dt;
    const k = key(node);
    time.set(k, (time.get(k) ?? 0) + dt);
  });
  return [...time.entries()]
    .map(([name, t]) => ({ name, selfShare: total ? t / total : 0 }))
    .sort((a, b) => b.selfShare - a.selfShare)
    .slice(0, top);
}

/** Self time by function (`name file:line`), the largest first. */
export function topFunctions(profile: CpuProfile, top = 15): ProfileLine[] {
  return shares(profile, (n) => {
    const { functionName, url, lineNumber } = n.callFrame;
    return url ? `${functionName || '(anonymous)'} ${frameOrigin(url, functionName)}:${lineNumber + 1}` : functionName;
  }, top);
}

/** Self time by origin (a package, a node internal, a project lib or app, `(idle)`, `(garbage collector)`), the largest first. */
export function topOrigins(profile: CpuProfile, top = 12): ProfileLine[] {
  return shares(profile, (n) => frameOrigin(n.callFrame.url, n.callFrame.functionName), top);
}
