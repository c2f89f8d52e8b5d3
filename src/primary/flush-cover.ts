// Which extents one side (the local component, or the peer) may still hold only in a volatile write
// cache: written since the last FLUSH that covered them completed there. A FLUSH covers exactly the
// writes noted before it begins — the caller notes a write when that is true of it (the peer: when
// the request is sent, since the secondary's FLUSH waits for every earlier write; the local disk:
// when its write completed, since an fdatasync covers what was written before it was called).
// The divergence record (issue 17, ./resource.ts) counts an extent as agreed only when neither side
// may still lose it; the remote half also gives the extents to resync when a remote FLUSH fails.

/** The extents one FLUSH covers, from begin() to its end. */
export type FlushToken = Set<number>;

export class FlushCover {
  /** Written since the last begin(). */
  #open = new Set<number>();
  /** Covered by a FLUSH on its way. */
  readonly #flushing = new Set<FlushToken>();

  /** A write of extents [first, last] that the next FLUSH covers. */
  note(first: number, last: number): void {
    for (let e = first; e <= last; e++) this.#open.add(e);
  }

  /** A FLUSH is issued: it covers every extent noted so far. */
  begin(): FlushToken {
    const token = this.#open;
    this.#open = new Set();
    this.#flushing.add(token);
    return token;
  }

  /** The FLUSH completed (or the side has no cache to flush): its extents are durable there. */
  done(token: FlushToken): void {
    this.#flushing.delete(token);
  }

  /**
   * The FLUSH failed: the side may have lost any extent written since its last good FLUSH. Returns
   * them all (this one's and every one noted or covered by a FLUSH still on its way), forgotten
   * here: the caller marks them for resync.
   */
  failed(token: FlushToken): Set<number> {
    this.#flushing.delete(token);
    const all = this.lost();
    for (const e of token) all.add(e);
    return all;
  }

  /**
   * The side is gone (the peer's connection ended): as failed(), for every extent noted or covered
   * by a FLUSH still on its way. A FLUSH that completes later changes nothing.
   */
  lost(): Set<number> {
    const all = new Set(this.#open);
    for (const t of this.#flushing) for (const e of t) all.add(e);
    this.#flushing.clear();
    this.#open = new Set();
    return all;
  }

  /** Whether extent `e` may still be lost by this side (not yet covered by a completed FLUSH). */
  pending(e: number): boolean {
    if (this.#open.has(e)) return true;
    for (const t of this.#flushing) if (t.has(e)) return true;
    return false;
  }
}
