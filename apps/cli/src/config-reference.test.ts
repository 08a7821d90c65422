import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { commonEnv } from '@coffer/runtime';
import { REFERENCE_END, REFERENCE_START, renderConfigReference, serviceSettingsSchemas, withConfigReference } from './config-reference';

const readmePath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'README.md');

describe('the configuration reference in README.md', () => {
  it('is what the settings schemas generate today (run `npm run docs:config` when this fails)', () => {
    const readme = readFileSync(readmePath, 'utf8');
    const section = readme.slice(readme.indexOf(REFERENCE_START) + REFERENCE_START.length, readme.indexOf(REFERENCE_END));
    expect(section.trim(), 'README.md is stale: run `npm run docs:config`').toBe(renderConfigReference().trim());
    expect(withConfigReference(readme)).toBe(readme);
  });

  it('lists every setting of every service, each with a description', () => {
    const reference = renderConfigReference();
    for (const [service, schema] of Object.entries(serviceSettingsSchemas)) {
      for (const [name, field] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
        expect(reference, `${service} ${name}`).toContain(`| \`${name}\` |`);
        expect(field.description, `${service} ${name} has no description`).toBeTruthy();
      }
    }
    for (const name of Object.keys(commonEnv)) expect(reference).toContain(`| \`${name}\` |`);
    expect(reference).toMatch(/\| `DATABASE_URL` \| \*\*required\*\* \|/);
    expect(reference).toMatch(/\| `AUTH_SCOPED_TOKEN_TTL_SECONDS` \| `1200` \| integer 60–3600 \|/);
  });

  it('notices a stale section', () => {
    const stale = `intro\n${REFERENCE_START}\n| \`OLD_SETTING\` | x |\n${REFERENCE_END}\nrest`;
    const fresh = withConfigReference(stale);
    expect(fresh).not.toContain('OLD_SETTING');
    expect(fresh).toContain('rest');
    expect(() => withConfigReference('no markers')).toThrow(/config-reference/);
  });
});
