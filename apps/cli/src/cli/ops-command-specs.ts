/** The options of one command, as args.ts reads them (a copy of its shape, so this table imports nothing). */
interface OpsCommandSpec {
  strings?: string[];
  booleans?: string[];
  required?: string[];
  args?: string[];
  summary: string;
}

/**
 * The operator commands of `commands-ops.ts`: connections, secret versions and rollback, the KEK and
 * the audit chain. Kept apart from args.ts so that it registers them with one line.
 */
export const opsCommandSpecs: Record<string, OpsCommandSpec> = {
  'connections list': { strings: ['workspace'], required: ['workspace'], summary: 'list the connections of a workspace' },
  'connections get': { args: ['id'], summary: 'show a connection' },
  'secrets versions': {
    args: ['actor-id'],
    strings: ['field'],
    summary: "list the versions of a source's or destination's secret fields (or of --field, e.g. api_token or $.keys[0].key): number, state, created at, which one is current; never a value",
  },
  'secrets rollback': {
    args: ['actor-id'],
    strings: ['field', 'to', 'expected-version'],
    required: ['field', 'to'],
    summary: 'make an earlier, still active version of a secret field current again: its value is written as the next version and the actor refers to it',
  },
  'kek list': { summary: 'list the key-encryption-key versions: state (primary, active, retired) and how many data keys each wraps (operator credentials)' },
  'kek rotate': { booleans: ['resume'], summary: 'create a new KEK version and re-wrap every live data key under it; --resume only finishes an interrupted re-wrap (operator credentials)' },
  'kek retire': { args: ['version'], summary: 'destroy a KEK version that wraps no data key any more (operator credentials)' },
  'audit verify': {
    strings: ['schema'],
    summary: "recompute the hash chain of each service's event log and report the first broken link (exit 1); the database: DATABASE_URL, else the running development stack's; --schema a,b picks the schemas",
  },
};
