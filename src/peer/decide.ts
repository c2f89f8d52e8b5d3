// The split-brain decision table (HAST-SPEC §7.2), evaluated by the secondary worker when a primary
// connects. Pure: the caller does the metadata write, the bitmap read, the reply and the exit.
import { SPLIT_BRAIN_ERRMSG } from './constants.js';

/** The secondary's stored values (S in the spec). */
export interface SecondaryCounters {
  readonly resuid: bigint;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
}

/** The values the primary sent in its second handshake message (P in the spec). */
export interface PrimaryCounters {
  readonly resuid: bigint;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
  /** The primary sent `virgin`: it has never been paired and has nothing to copy. */
  readonly virgin: boolean;
}

/** Which node's data is authoritative for the resync; `syncsrc` on the wire (1 / 2). */
export type SyncSrc = 'primary' | 'secondary';

/**
 * Rule 1: the secondary was never paired. Adopt the primary's resuid (write metadata), reply
 * `virgin` and syncsrc primary; send no bitmap (mapsize 0) if the primary is virgin too, else an
 * all-ones bitmap (full sync).
 */
export interface AdoptDecision {
  readonly kind: 'adopt';
  readonly sendBitmap: 'none' | 'all-ones';
  readonly syncSrc: 'primary';
}

/** Rule 2: different resources. Reply `errmsg` and exit 78 (EX_CONFIG). */
export interface RefuseDecision {
  readonly kind: 'refuse';
  readonly errmsg: string;
}

/**
 * Rule 6: both sides were written while apart. Log "Split-brain detected, exiting.", reply
 * `errmsg`, run the split-brain hook, exit 78.
 */
export interface SplitBrainDecision {
  readonly kind: 'split-brain';
  readonly errmsg: typeof SPLIT_BRAIN_ERRMSG;
}

/**
 * Rules 3–5 (bitmap 'own': the secondary's on-disk bitmap) and rule 7 (bitmap 'all-ones', with a
 * `warning` to log at warning level).
 */
export interface SyncDecision {
  readonly kind: 'sync';
  readonly syncSrc: SyncSrc;
  readonly bitmap: 'own' | 'all-ones';
  readonly warning?: string;
}

export type SyncDecisionResult = AdoptDecision | RefuseDecision | SplitBrainDecision | SyncDecision;

/**
 * Decide what a secondary does with a connecting primary, from both nodes' resuid and counters.
 * Rows are tested in upstream's order (secondary.c `init_remote`).
 */
export function decideSync(s: SecondaryCounters, p: PrimaryCounters): SyncDecisionResult {
  if (s.resuid === 0n) {
    return { kind: 'adopt', sendBitmap: p.virgin ? 'none' : 'all-ones', syncSrc: 'primary' };
  }
  if (s.resuid !== p.resuid) {
    return {
      kind: 'refuse',
      errmsg: `Resource unique ID mismatch (primary=${p.resuid}, secondary=${s.resuid}).`,
    };
  }
  // Rule 3: the primary is out of date (only the secondary was written while apart).
  if (s.localCnt > p.remoteCnt && s.remoteCnt === p.localCnt) {
    return { kind: 'sync', syncSrc: 'secondary', bitmap: 'own' };
  }
  // Rule 4: in sync ("regular sync just in case"); rule 5: the secondary is out of date.
  if (s.localCnt === p.remoteCnt && s.remoteCnt <= p.localCnt) {
    return { kind: 'sync', syncSrc: 'primary', bitmap: 'own' };
  }
  // Rule 6: both were written while apart.
  if (s.localCnt > p.remoteCnt && p.localCnt > s.remoteCnt) {
    return { kind: 'split-brain', errmsg: SPLIT_BRAIN_ERRMSG };
  }
  // Rule 7: combinations that should be impossible; copy everything.
  return {
    kind: 'sync',
    syncSrc: s.localCnt > p.remoteCnt ? 'secondary' : 'primary',
    bitmap: 'all-ones',
    warning:
      `This should never happen, asking for full synchronization (primary(local=${p.localCnt}, ` +
      `remote=${p.remoteCnt}), secondary(local=${s.localCnt}, remote=${s.remoteCnt})).`,
  };
}
