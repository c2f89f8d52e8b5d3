// The counter logic before the split-brain fix (at ef1c807: resource.ts #degradedWrite,
// connect.ts, replicate.ts), kept as a mutant for the model test: the model must find the
// undetected split-brain of issue 13 finding 1 with it, or the model proves nothing.
import type { CounterFields, PeerCounters, Persist } from '../../../src/primary/counters.js';
import type { CounterPolicy, ModelOptions } from './two-nodes.js';

class LegacyCounters implements CounterPolicy {
  readonly #md: CounterFields;
  readonly #fresh: () => bigint;
  #peer: PeerCounters | null = null;
  /** resource.ts peerRemoteCnt: 0 until a handshake. */
  #peerRemoteCnt = 0n;

  constructor(md: CounterFields, fresh: () => bigint) {
    this.#md = md;
    this.#fresh = fresh;
  }

  beforeHandshake(): { virgin: boolean; persist: Persist } {
    if (this.#md.resuid !== 0n) return { virgin: false, persist: 'none' };
    this.#md.resuid = this.#fresh();
    return { virgin: true, persist: 'write' };
  }

  onSyncReply(peer: PeerCounters): Persist {
    this.#peer = peer;
    this.#peerRemoteCnt = peer.remoteCnt;
    if (peer.virgin && this.#md.localCnt === 0n) {
      this.#md.localCnt = 1n;
      return 'write';
    }
    return 'none';
  }

  onUnreplicatedWrite(kind: 'degraded' | 'remote-failed'): Persist {
    // A write whose remote leg failed was acknowledged without any counter change.
    if (kind === 'remote-failed') return 'none';
    if (this.#md.resuid === 0n) {
      // In memory only.
      if (this.#md.localCnt === 0n) this.#md.localCnt = 1n;
      return 'none';
    }
    if (this.#md.localCnt === this.#peerRemoteCnt) {
      this.#md.localCnt++;
      return 'write';
    }
    return 'none';
  }

  onSyncComplete(): Persist {
    const peer = this.#peer;
    if (peer === null) return 'none';
    this.#md.localCnt = peer.remoteCnt;
    this.#md.remoteCnt = peer.localCnt;
    // The bug of finding 1: the peer's local counter, not its remote one.
    this.#peerRemoteCnt = peer.localCnt;
    return 'write';
  }
}

/** The daemon before the fix: old counters, and `role primary` starts anyway after the wait. */
export const LEGACY: ModelOptions = {
  counters: (md, fresh) => new LegacyCounters(md, fresh),
  refuseWhilePeerPrimary: false,
};
