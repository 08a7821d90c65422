import { join } from 'node:path';
import { doctorCommand, STACK_ENV_DIR_NAME } from '../doctor';
import { cofferHome } from '../home';
import { migrateCommand } from '../migrate';
import { parseCommandLine, usageText, UsageError } from './args';
import { runCommand, type CliContext } from './commands';
import { isOpsCommand, runOpsCommand } from './commands-ops';
import { runDemo } from './demo';
import { errorLine } from './format';

/** Runs the `coffer` command line; resolves the exit code (0 done, 1 refused or failed, 2 usage). */
export async function runCli(argv: readonly string[], ctx: CliContext): Promise<number> {
  if (!argv.length || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    ctx.out(usageText());
    return argv.length ? 0 : 2;
  }
  try {
    // The security self-check keeps its own parser (apps/cli/src/doctor.ts).
    if (argv[0] === 'doctor') {
      return await doctorCommand([...argv.slice(1)], ctx.env, ctx.out, join(ctx.home.dir, STACK_ENV_DIR_NAME)).catch((err: unknown) => {
        ctx.progress(errorLine(err));
        return 2;
      });
    }
    // Database migrations: against DATABASE_URL, as an operator or a deployment's Job runs them.
    if (argv[0] === 'migrate') {
      return await migrateCommand([...argv.slice(1)], ctx.env, ctx.out).catch((err: unknown) => {
        ctx.progress(errorLine(err));
        return 2;
      });
    }
    const parsed = parseCommandLine(argv);
    if (parsed.options.help) {
      ctx.out(usageText());
      return 0;
    }
    if (isOpsCommand(parsed.command)) return await runOpsCommand(ctx, parsed);
    return parsed.command === 'demo' ? await runDemo(ctx, parsed) : await runCommand(ctx, parsed);
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.progress(`error: ${err.message}\n(coffer --help lists the commands)`);
      return 2;
    }
    ctx.progress(errorLine(err));
    // The one line is for users; COFFER_DEBUG=1 shows where it came from.
    if (ctx.env.COFFER_DEBUG && err instanceof Error) ctx.progress(err.stack ?? '');
    return 1;
  }
}

/** The `coffer` process: runs the command line of this process and sets its exit code. */
export async function main(): Promise<void> {
  const ctx: CliContext = {
    home: cofferHome(process.env.COFFER_HOME, process.cwd()),
    env: process.env,
    out: (text) => process.stdout.write(`${text}\n`),
    progress: (text) => process.stderr.write(text.startsWith('\r') || text === '\n' ? text : `${text}\n`),
    now: () => new Date(),
  };
  try {
    process.exitCode = await runCli(process.argv.slice(2), ctx);
  } catch (err) {
    process.stderr.write(`${errorLine(err)}\n`);
    process.exitCode = 1;
  }
}
