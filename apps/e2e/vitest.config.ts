import { projectConfig } from '../../vitest.shared.ts';

// Each file starts four service processes: one file at a time keeps a 2-core machine responsive.
export default projectConfig({ testTimeout: 120_000, fileParallelism: false });
