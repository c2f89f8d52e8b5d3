// The primary's half of split-brain detection (HAST-SPEC §7.1): when localcnt/remotecnt move. Pure
// bookkeeping over the metadata's counters; the caller writes the metadata (durably where a method
// says so) and the secondary's half is the decision table in ../peer/decide.ts. The daemon and the
// model test (test/unit/model) drive this same class, so a bug here is a bug the model finds.
import { randomBytes } from 'node:crypto';

/** The metadata fields this class reads and moves (a live Metadata object in the daemon). */
export interface CounterFields {
  resuid: bigint;
  localCnt: bigint;
  remoteCnt: bigint;
}

/** The secondary's counters as announced in its handshake reply. */
export interface PeerCounters {
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
  readonly virgin: boolean;
}

/** What a change asks of the caller: nothing, a metadata write, or a durable one (write + flush). */
export type Persist = 'none' | 'write' | 'durable';

function randomResuid(): bigint {
  return randomBytes(8).readBigUInt64LE(0) || 1n;
}

/**
 * One primary worker's counter state.
 *
 * Detection rule (a deviation from upstream, see README "Split-brain"): the first write of a worker
 * that the peer does not get (degraded, or its remote leg failed) increments localcnt, and that
 * write is not acknowledged before the new value is on stable storage. The worker then counts as
 * diverged, with no further bumps, until a sync finishes and the counters are equalised. Upstream
 * bumps only while localcnt equals the secondary's remotecnt from the last handshake, which it
 * does not know in a worker that never connected (it compares with 0): after an asymmetric sync
 * (a=1/0, b=0/1) a promoted node never bumped and a two-sided divergence looked one-sided.
 * Extra bumps are harmless: the table compares with > and <, never with a distance.
 */
export class PrimaryCounters {
  readonly #md: CounterFields;
  readonly #fresh: () => bigint;
  #peer: PeerCounters | null = null;
  /** localcnt is already ahead of the last point of agreement: no bump needed. */
  #diverged = false;

  constructor(md: CounterFields, freshResuid: () => bigint = randomResuid) {
    this.#md = md;
    this.#fresh = freshResuid;
  }

  get diverged(): boolean {
    return this.#diverged;
  }

  /**
   * Before the second handshake message (§6.3 step 5): a never-paired primary that has not been
   * written either gets its resuid now and announces `virgin` (nothing to copy).
   */
  beforeHandshake(): { virgin: boolean; persist: Persist } {
    if (this.#md.resuid !== 0n) return { virgin: false, persist: 'none' };
    this.#md.resuid = this.#fresh();
    return { virgin: true, persist: 'write' };
  }

  /** The secondary accepted (§6.3 step 8): remember its counters; the virgin bump. */
  onSyncReply(peer: PeerCounters): Persist {
    this.#peer = peer;
    if (peer.virgin && this.#md.localCnt === 0n) {
      // An interrupted initial sync resumes in the right direction after a failover (§7.3).
      this.#md.localCnt = 1n;
      return 'write';
    }
    return 'none';
  }

  /**
   * A write the local component applied and the peer did not (not connected, or the remote leg
   * failed). `durable`: the write must not be acknowledged before the metadata is on stable
   * storage. A never-paired primary gets its resuid here, as upstream's first write does: it has
   * data now, and a peer that was written on its own cannot be mistaken for its copy (the resuids
   * differ, §7.2 rule 2).
   */
  onUnreplicatedWrite(): Persist {
    if (this.#diverged) return 'none';
    this.#diverged = true;
    if (this.#md.resuid === 0n) {
      this.#md.resuid = this.#fresh();
      if (this.#md.localCnt === 0n) this.#md.localCnt = 1n;
    } else {
      this.#md.localCnt++;
    }
    return 'durable';
  }

  /** The bump could not be made durable: the next unreplicated write tries again. */
  onPersistFailed(): void {
    this.#diverged = false;
  }

  /**
   * A sync finished while connected (§7.1): both copies agree, so adopt the secondary's view:
   * localcnt := its remotecnt, remotecnt := its localcnt.
   */
  onSyncComplete(): Persist {
    const peer = this.#peer;
    if (peer === null) return 'none';
    this.#md.localCnt = peer.remoteCnt;
    this.#md.remoteCnt = peer.localCnt;
    this.#diverged = false;
    return 'write';
  }
}
