import { CofferError } from '@coffer/contracts';
import type { CallContext } from '@coffer/rpc';
import type { Principal } from '@coffer/tokens';
import type { Owner } from './config.service';

/** Finds the owner of a workspace, an actor or a connection. */
export interface OwnerLookup {
  ownerOf(target: { workspaceId?: string; actorId?: string; connectionId?: string }): Promise<Owner | undefined>;
}

function principalOf(ctx: CallContext): Principal {
  if (!ctx.principal) throw new CofferError('unauthenticated', 'missing bearer token');
  return ctx.principal;
}

type Target = 'workspace' | 'actor' | 'connection';

/**
 * Narrows each call to what the caller's token covers. Service tokens (operators, sync-worker) reach
 * every workspace their role allows; an application token reaches its organization's workspaces; a
 * scoped or widget token reaches its one workspace. A resource outside the scope gets the very answer
 * of one that does not exist (NOT_FOUND, same message, after the same one lookup), so no token can
 * tell another organization's ids from random ones.
 */
export function createScopeGuard(lookup: OwnerLookup) {
  const notFound = (what: Target, field: string) => new CofferError('not_found', `no such ${what}`, [{ field, reason: 'not found' }]);

  function check(p: Principal, owner: Owner | undefined, what: Target, field: string, options: { organizationWide?: boolean } = {}): void {
    if (p.kind === 'service') return;
    if (owner && owner.organizationId === p.organizationId) {
      if (p.kind === 'application') return;
      if (owner.workspaceId === p.workspaceId) {
        if (options.organizationWide) throw new CofferError('permission_denied', `only the organization's application may do this to a workspace`);
        return;
      }
    }
    throw notFound(what, field);
  }

  return {
    async workspace(ctx: CallContext, workspaceId: string, options?: { organizationWide?: boolean }): Promise<void> {
      const p = principalOf(ctx);
      if (p.kind === 'service') return;
      check(p, await lookup.ownerOf({ workspaceId }), 'workspace', 'workspace_id', options);
    },
    async actor(ctx: CallContext, actorId: string, field = 'actor_id'): Promise<void> {
      const p = principalOf(ctx);
      if (p.kind === 'service') return;
      check(p, await lookup.ownerOf({ actorId }), 'actor', field);
    },
    async connection(ctx: CallContext, connectionId: string): Promise<void> {
      const p = principalOf(ctx);
      if (p.kind === 'service') return;
      check(p, await lookup.ownerOf({ connectionId }), 'connection', 'connection_id');
    },
    /** Which workspaces a listing may show. */
    listFilter(ctx: CallContext): { organizationId?: string; workspaceId?: string } {
      const p = principalOf(ctx);
      if (p.kind === 'service') return {};
      if (p.kind === 'application') return { organizationId: p.organizationId };
      return { organizationId: p.organizationId, workspaceId: p.workspaceId };
    },
    /** The organization a new workspace belongs to: the token's own; operators choose. */
    organizationForNewWorkspace(ctx: CallContext, requested: string): string {
      const p = principalOf(ctx);
      if (p.kind === 'service') return requested;
      if (p.kind !== 'application') throw new CofferError('permission_denied', 'a scoped token cannot create workspaces');
      if (requested && requested !== p.organizationId) throw new CofferError('permission_denied', 'the token is for another organization');
      return p.organizationId!;
    },
  };
}
