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

/**
 * Narrows each call to what the caller's token covers. Service tokens (operators, sync-worker) reach
 * every workspace their role allows; an application token reaches its organization's workspaces; a
 * scoped or widget token reaches its one workspace. A resource outside the scope is refused with
 * PERMISSION_DENIED whether or not it exists, and one that does not exist is NOT_FOUND only inside it.
 */
export function createScopeGuard(lookup: OwnerLookup) {
  function check(p: Principal, owner: Owner | undefined, what: string, options: { organizationWide?: boolean } = {}): void {
    if (p.kind === 'service') return;
    if (owner && owner.organizationId === p.organizationId) {
      if (p.kind === 'application') return;
      if (options.organizationWide) throw new CofferError('permission_denied', `only the organization's application may do this to a workspace`);
      if (owner.workspaceId === p.workspaceId) return;
    }
    if (!owner && p.kind === 'application') throw new CofferError('not_found', `no ${what}`);
    throw new CofferError('permission_denied', `the token does not cover this ${what}`);
  }

  return {
    async workspace(ctx: CallContext, workspaceId: string, options?: { organizationWide?: boolean }): Promise<void> {
      const p = principalOf(ctx);
      if (p.kind === 'service') return;
      // A scoped token names its workspace: anything else is refused before any lookup.
      if (p.kind !== 'application' && workspaceId !== p.workspaceId) throw new CofferError('permission_denied', 'the token does not cover this workspace');
      check(p, await lookup.ownerOf({ workspaceId }), 'workspace', options);
    },
    async actor(ctx: CallContext, actorId: string): Promise<void> {
      const p = principalOf(ctx);
      if (p.kind === 'service') return;
      check(p, await lookup.ownerOf({ actorId }), 'actor');
    },
    async connection(ctx: CallContext, connectionId: string): Promise<void> {
      const p = principalOf(ctx);
      if (p.kind === 'service') return;
      check(p, await lookup.ownerOf({ connectionId }), 'connection');
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
