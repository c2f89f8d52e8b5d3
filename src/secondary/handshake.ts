// The secondary's half of the connect-time decision (HAST-SPEC §7.2): pure, returns what to do; the
// worker performs the metadata write and sends the reply.

/** Counters and identity of one side. */
export interface SyncCounters {
  readonly resuid: bigint;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
}

export type SyncDecision =
  /** Rule 1: adopt the primary's resuid (write metadata), reply virgin; bitmap none or all-ones. */
  | { readonly kind: 'adopt'; readonly syncSrc: 'primary'; readonly bitmap: 'none' | 'ones' }
  /** Rule 2: refuse with this errmsg, exit 78. */
  | { readonly kind: 'mismatch'; readonly errmsg: string }
  /** Rules 3–5: send own bitmap. */
  | { readonly kind: 'sync'; readonly syncSrc: 'primary' | 'secondary'; readonly bitmap: 'own' }
  /** Rule 6. */
  | { readonly kind: 'split-brain' }
  /** Rule 7: warn, all-ones bitmap. */
  | { readonly kind: 'never'; readonly syncSrc: 'primary' | 'secondary'; readonly bitmap: 'ones'; readonly warning: string };

/**
 * Decide per HAST-SPEC §7.2 from the secondary's stored values `s` and what the primary sent `p`
 * (`virgin`: the primary has never been paired).
 */
export function decideSecondary(s: SyncCounters, p: SyncCounters & { readonly virgin: boolean }): SyncDecision {
  if (s.resuid === 0n) return { kind: 'adopt', syncSrc: 'primary', bitmap: p.virgin ? 'none' : 'ones' };
  if (s.resuid !== p.resuid) {
    return { kind: 'mismatch', errmsg: `Resource unique ID mismatch (primary=${p.resuid}, secondary=${s.resuid}).` };
  }
  if (s.localCnt > p.remoteCnt && s.remoteCnt === p.localCnt) return { kind: 'sync', syncSrc: 'secondary', bitmap: 'own' };
  if (s.localCnt === p.remoteCnt && s.remoteCnt === p.localCnt) return { kind: 'sync', syncSrc: 'primary', bitmap: 'own' };
  if (s.localCnt === p.remoteCnt && s.remoteCnt < p.localCnt) return { kind: 'sync', syncSrc: 'primary', bitmap: 'own' };
  if (s.localCnt > p.remoteCnt && p.localCnt > s.remoteCnt) return { kind: 'split-brain' };
  return {
    kind: 'never',
    syncSrc: s.localCnt > p.remoteCnt ? 'secondary' : 'primary',
    bitmap: 'ones',
    warning:
      `This should never happen, asking for full synchronization (primary(local=${p.localCnt}, remote=${p.remoteCnt}), ` +
      `secondary(local=${s.localCnt}, remote=${s.remoteCnt})).`,
  };
}
