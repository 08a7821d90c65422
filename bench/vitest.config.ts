import { defineConfig } from 'vitest/config';

// Only the pure parts are tested (statistics, /proc parsing, the table, the result file): no servers, no timing.
export default defineConfig({ test: { include: ['src/**/*.test.ts'], pool: 'forks', maxWorkers: 2 } });
