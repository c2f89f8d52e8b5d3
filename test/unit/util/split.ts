// Split-at-every-offset checking, written once for every stream parser: a byte stream must parse
// the same however the socket cuts it into chunks (pg-protocol's inbound-parser tests do the same).
import assert from 'node:assert/strict';
import { prng } from '../../../src/tools/verify-workload.js';

export interface Split {
  /** For the failure message: where the cuts are. */
  readonly name: string;
  readonly chunks: readonly Buffer[];
}

export interface SplitOptions {
  /** How many random multi-chunk splits besides the exhaustive ones (default 50). */
  readonly random?: number;
  /** Seed of the random splits, so a failure replays (default 1). */
  readonly seed?: number;
}

/**
 * Every way worth trying to cut `bytes`: in two at every offset (0 and the end included, so one
 * chunk is empty), one byte per chunk, and seeded random cuts into 3 to 12 chunks. Each chunk is
 * its own copy, so a parser that reads past a chunk's end into its neighbour is caught.
 */
export function* splits(bytes: Buffer, opts: SplitOptions = {}): Generator<Split> {
  const copy = (from: number, to: number): Buffer => Buffer.from(bytes.subarray(from, to));
  for (let cut = 0; cut <= bytes.length; cut++) {
    yield { name: `cut at ${cut}`, chunks: [copy(0, cut), copy(cut, bytes.length)] };
  }
  const bytewise: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bytewise.push(copy(i, i + 1));
  yield { name: 'one byte per chunk', chunks: bytewise };
  const rnd = prng(opts.seed ?? 1);
  const below = (k: number): number => Math.floor(rnd() * k);
  for (let r = 0; r < (opts.random ?? 50); r++) {
    const n = 3 + below(10);
    const cuts = Array.from({ length: n - 1 }, () => below(bytes.length + 1)).sort((a, b) => a - b);
    const bounds = [0, ...cuts, bytes.length];
    const chunks: Buffer[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) chunks.push(copy(bounds[i] as number, bounds[i + 1] as number));
    yield { name: `cuts at ${cuts.join(',')}`, chunks };
  }
}

/**
 * Feed `bytes` to a fresh parser once whole and once per split; every split must give the same
 * result (deep equality) as the whole stream. `parse` builds its own parser from nothing, feeds it
 * the chunks in order, and returns what it parsed in a comparable form.
 * @returns the result of the unsplit parse, for the caller to check against the specification
 */
export async function assertSameAtEverySplit<T>(
  bytes: Buffer,
  parse: (chunks: readonly Buffer[]) => T | Promise<T>,
  opts: SplitOptions = {},
): Promise<T> {
  const whole = await parse([Buffer.from(bytes)]);
  for (const s of splits(bytes, opts)) assert.deepStrictEqual(await parse(s.chunks), whole, s.name);
  return whole;
}
