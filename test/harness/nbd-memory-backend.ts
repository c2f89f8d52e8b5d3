// An in-memory NbdBackend for unit tests: records every call, can be told to fail or to hold
// requests so tests can observe ordering and back-pressure.
import type { NbdBackend } from '../../src/nbd/server.js';

export interface MemoryCall {
  op: 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes';
  offset: number;
  length: number;
  fua: boolean;
}

export class MemoryBackend implements NbdBackend {
  readonly data: Buffer;
  readonly readOnly: boolean;
  readonly canMultiConn = true;
  readonly canFastZero = false;
  readonly calls: MemoryCall[] = [];
  /** When set, the next calls reject with this code. */
  failWith: string | null = null;
  /** When true, calls wait until release() is called. */
  hold = false;
  #held: (() => void)[] = [];

  constructor(size: number, opts: { readOnly?: boolean } = {}) {
    this.data = Buffer.alloc(size);
    this.readOnly = opts.readOnly ?? false;
  }

  get size(): number {
    return this.data.length;
  }

  /** Requests currently held. */
  get heldCount(): number {
    return this.#held.length;
  }

  /** Let every held request proceed. */
  release(): void {
    const h = this.#held;
    this.#held = [];
    for (const f of h) f();
  }

  async #gate(call: MemoryCall): Promise<void> {
    this.calls.push(call);
    if (this.hold) await new Promise<void>((r) => this.#held.push(r));
    if (this.failWith !== null) throw Object.assign(new Error(`injected ${this.failWith}`), { code: this.failWith });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    await this.#gate({ op: 'read', offset, length, fua: false });
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.#gate({ op: 'write', offset, length: data.length, fua });
    data.copy(this.data, offset);
  }

  async flush(): Promise<void> {
    await this.#gate({ op: 'flush', offset: 0, length: 0, fua: false });
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#gate({ op: 'trim', offset, length, fua });
    this.data.fill(0, offset, offset + length);
  }

  async writeZeroes(offset: number, length: number, opts: { fua: boolean }): Promise<void> {
    await this.#gate({ op: 'writeZeroes', offset, length, fua: opts.fua });
    this.data.fill(0, offset, offset + length);
  }
}
