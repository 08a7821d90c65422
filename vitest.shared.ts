import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const globalSetup = fileURLToPath(new URL('./libs/testing/src/global-setup.ts', import.meta.url));

/** The vitest config every project uses: unit and integration tests side by side, one shared Postgres/NATS. */
export function projectConfig(options: { testTimeout?: number; fileParallelism?: boolean } = {}) {
  return defineConfig({
    test: {
      include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
      globalSetup: [globalSetup],
      testTimeout: options.testTimeout ?? 30_000,
      hookTimeout: 120_000,
      pool: 'forks',
      maxWorkers: 2,
      fileParallelism: options.fileParallelism ?? true,
      passWithNoTests: false,
    },
  });
}
