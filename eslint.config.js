import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/src/gen/**', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
      // Each service's tables live in a schema chosen by configuration, so kysely runs untyped (Kysely<any>).
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['**/*.test.ts', '**/scripts/**', 'apps/cli/**'],
    rules: { 'no-console': 'off' },
  },
  {
    // The connect widget is a plain browser script, served as it is.
    files: ['apps/edge/widget/**/*.js'],
    languageOptions: { sourceType: 'script', globals: globals.browser },
  },
);
