import { projectConfig } from '../../vitest.shared.ts';

// The integration file starts the four services, the edge and (where installed) Chromium: one file at a time.
export default projectConfig({ testTimeout: 120_000, fileParallelism: false });
