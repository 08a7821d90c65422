import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const globalSetup = fileURLToPath(new URL('../../libs/testing/src/global-setup.ts', import.meta.url));

// The chaos suite only (`npm run test:chaos`): one long test over a stack of its own, never part of `npm test`.
export default defineConfig({
  test: {
    include: ['src/chaos/*.suite.ts'],
    globalSetup: [globalSetup],
    // The suite bounds each phase itself and keeps to CHAOS_BUDGET_S (14 min); this is the backstop.
    testTimeout: 20 * 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    // The progress lines and the table go straight to the terminal as they are written.
    disableConsoleIntercept: true,
    passWithNoTests: false,
  },
});
