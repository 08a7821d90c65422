import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createTestDatabase, uniqueNamespace } from './index';

describe('createTestDatabase', () => {
  it('creates a database that answers and drops it again', async () => {
    const db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ current_database: string }>('select current_database()');
    await client.end();
    expect(rows[0]?.current_database).toBe(db.name);
    await db.drop();
  });

  it('gives every call its own namespace', () => {
    expect(uniqueNamespace().streamPrefix).not.toBe(uniqueNamespace().streamPrefix);
  });
});
