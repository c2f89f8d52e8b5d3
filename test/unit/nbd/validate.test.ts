// validateRequest() without sockets: one row per check, its accepting and its refusing side
// (proto.md "Request types"; the errors NBD.md lists: EINVAL, EPERM, ENOSPC, and a closed stream).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NBD_CMD, NBD_CMD_FLAG, NBD_E, NBD_REQUEST_MAGIC } from '../../../src/nbd/constants.js';
import type { NbdRequest } from '../../../src/nbd/request.js';
import { validateRequest, type RequestLimits } from '../../../src/nbd/validate.js';

const SIZE = 1 << 20;
const MAX = 64 * 1024;
const BASE: RequestLimits = {
  size: SIZE,
  maxBlockSize: MAX,
  readOnly: false,
  canFastZero: false,
  structuredReplies: false,
  metaContextId: null,
};

const { READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS } = NBD_CMD;
const { FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO } = NBD_CMD_FLAG;
const { EINVAL, EPERM, ENOSPC } = NBD_E;

/** Expected outcome: 'ok', 'noop', 'fatal', or the NBD error value. */
type Want = 'ok' | 'noop' | 'fatal' | number;

interface Row {
  readonly name: string;
  readonly type: number;
  readonly flags?: number;
  readonly offset?: number;
  readonly length?: number;
  readonly magic?: number;
  readonly limits?: Partial<RequestLimits>;
  readonly want: Want;
}

const ROWS: readonly Row[] = [
  // Every command: a bad magic means the stream is lost.
  { name: 'good magic', type: FLUSH, want: 'ok' },
  { name: 'bad magic', type: FLUSH, magic: 0x25609514, want: 'fatal' },
  { name: 'bad magic even for DISC', type: DISC, magic: 0, want: 'fatal' },

  // READ
  { name: 'READ inside the export', type: READ, offset: 4096, length: 512, want: 'ok' },
  { name: 'READ ending exactly at the end', type: READ, offset: SIZE - 512, length: 512, want: 'ok' },
  { name: 'READ one byte past the end', type: READ, offset: SIZE - 511, length: 512, want: EINVAL },
  { name: 'READ at an offset beyond 2^53', type: READ, offset: -1, length: 512, want: EINVAL },
  { name: 'READ of length 0', type: READ, length: 0, want: EINVAL },
  { name: 'READ of the maximum block size', type: READ, length: MAX, want: 'ok' },
  { name: 'READ longer than the maximum block size', type: READ, length: MAX + 1, want: 'fatal' },
  { name: 'READ too long wins over bad flags', type: READ, flags: 0x80, length: MAX + 1, want: 'fatal' },
  { name: 'READ with FUA', type: READ, flags: FUA, length: 512, want: 'ok' },
  {
    name: 'READ with DF and structured replies',
    type: READ,
    flags: DF,
    length: 512,
    limits: { structuredReplies: true },
    want: 'ok',
  },
  { name: 'READ with DF without structured replies', type: READ, flags: DF, length: 512, want: EINVAL },
  { name: 'READ with NO_HOLE', type: READ, flags: NO_HOLE, length: 512, want: EINVAL },
  { name: 'READ on a read-only export', type: READ, length: 512, limits: { readOnly: true }, want: 'ok' },

  // WRITE (every refusal: the caller drains the payload)
  { name: 'WRITE inside the export', type: WRITE, offset: 0, length: 512, want: 'ok' },
  { name: 'WRITE with FUA', type: WRITE, flags: FUA, length: 512, want: 'ok' },
  { name: 'WRITE with DF', type: WRITE, flags: DF, length: 512, limits: { structuredReplies: true }, want: EINVAL },
  { name: 'WRITE of length 0', type: WRITE, length: 0, want: EINVAL },
  { name: 'WRITE of the maximum block size', type: WRITE, length: MAX, want: 'ok' },
  { name: 'WRITE longer than the maximum block size', type: WRITE, length: MAX + 1, want: 'fatal' },
  { name: 'WRITE on a read-only export', type: WRITE, length: 512, limits: { readOnly: true }, want: EPERM },
  {
    name: 'WRITE bad flags win over read-only',
    type: WRITE,
    flags: NO_HOLE,
    length: 512,
    limits: { readOnly: true },
    want: EINVAL,
  },
  { name: 'WRITE past the end', type: WRITE, offset: SIZE - 10, length: 100, want: ENOSPC },
  {
    name: 'WRITE read-only wins over past the end',
    type: WRITE,
    offset: SIZE,
    length: 1,
    limits: { readOnly: true },
    want: EPERM,
  },

  // DISC: no flag or range checks
  { name: 'DISC', type: DISC, want: 'ok' },
  { name: 'DISC with any flags and range', type: DISC, flags: 0xffff, offset: -1, length: 7, want: 'ok' },

  // FLUSH: flags only
  { name: 'FLUSH', type: FLUSH, want: 'ok' },
  { name: 'FLUSH with FUA', type: FLUSH, flags: FUA, want: 'ok' },
  { name: 'FLUSH with any range', type: FLUSH, offset: -1, length: 99, want: 'ok' },
  { name: 'FLUSH with REQ_ONE', type: FLUSH, flags: REQ_ONE, want: EINVAL },

  // TRIM
  { name: 'TRIM inside the export', type: TRIM, length: 4096, want: 'ok' },
  { name: 'TRIM with FUA', type: TRIM, flags: FUA, length: 4096, want: 'ok' },
  { name: 'TRIM with NO_HOLE', type: TRIM, flags: NO_HOLE, length: 4096, want: EINVAL },
  { name: 'TRIM past the end', type: TRIM, offset: SIZE, length: 1, want: EINVAL },
  { name: 'TRIM longer than the maximum block size', type: TRIM, length: SIZE, want: 'ok' },
  { name: 'TRIM of length 0', type: TRIM, length: 0, want: 'noop' },
  { name: 'TRIM on a read-only export', type: TRIM, length: 4096, limits: { readOnly: true }, want: EPERM },
  { name: 'TRIM of length 0 on a read-only export', type: TRIM, length: 0, limits: { readOnly: true }, want: EPERM },
  {
    name: 'TRIM past the end wins over read-only',
    type: TRIM,
    offset: SIZE,
    length: 1,
    limits: { readOnly: true },
    want: EINVAL,
  },

  // CACHE: checked, then answered at once
  { name: 'CACHE inside the export', type: CACHE, length: 4096, want: 'noop' },
  { name: 'CACHE of length 0', type: CACHE, length: 0, want: 'noop' },
  { name: 'CACHE with DF', type: CACHE, flags: DF, length: 4096, want: EINVAL },
  { name: 'CACHE past the end', type: CACHE, offset: SIZE - 1, length: 2, want: EINVAL },

  // WRITE_ZEROES
  { name: 'WRITE_ZEROES inside the export', type: WRITE_ZEROES, length: 4096, want: 'ok' },
  { name: 'WRITE_ZEROES with FUA and NO_HOLE', type: WRITE_ZEROES, flags: FUA | NO_HOLE, length: 4096, want: 'ok' },
  {
    name: 'WRITE_ZEROES with FAST_ZERO when it fails fast',
    type: WRITE_ZEROES,
    flags: FAST_ZERO,
    length: 4096,
    limits: { canFastZero: true },
    want: 'ok',
  },
  { name: 'WRITE_ZEROES with FAST_ZERO otherwise', type: WRITE_ZEROES, flags: FAST_ZERO, length: 4096, want: EINVAL },
  { name: 'WRITE_ZEROES with DF', type: WRITE_ZEROES, flags: DF, length: 4096, want: EINVAL },
  { name: 'WRITE_ZEROES of length 0', type: WRITE_ZEROES, length: 0, want: 'noop' },
  { name: 'WRITE_ZEROES longer than the maximum block size', type: WRITE_ZEROES, length: SIZE, want: 'ok' },
  { name: 'WRITE_ZEROES past the end', type: WRITE_ZEROES, offset: SIZE - 1, length: 2, want: ENOSPC },
  {
    name: 'WRITE_ZEROES on a read-only export',
    type: WRITE_ZEROES,
    length: 4096,
    limits: { readOnly: true },
    want: EPERM,
  },
  {
    name: 'WRITE_ZEROES read-only wins over past the end',
    type: WRITE_ZEROES,
    offset: SIZE,
    length: 1,
    limits: { readOnly: true },
    want: EPERM,
  },

  // BLOCK_STATUS: needs base:allocation selected
  {
    name: 'BLOCK_STATUS with a meta context',
    type: BLOCK_STATUS,
    length: 4096,
    limits: { metaContextId: 1 },
    want: 'ok',
  },
  { name: 'BLOCK_STATUS without a meta context', type: BLOCK_STATUS, length: 4096, want: EINVAL },
  {
    name: 'BLOCK_STATUS with REQ_ONE and FUA',
    type: BLOCK_STATUS,
    flags: REQ_ONE | FUA,
    length: 4096,
    limits: { metaContextId: 1 },
    want: 'ok',
  },
  {
    name: 'BLOCK_STATUS with DF',
    type: BLOCK_STATUS,
    flags: DF,
    length: 4096,
    limits: { metaContextId: 1 },
    want: EINVAL,
  },
  { name: 'BLOCK_STATUS of length 0', type: BLOCK_STATUS, length: 0, limits: { metaContextId: 1 }, want: EINVAL },
  {
    name: 'BLOCK_STATUS past the end',
    type: BLOCK_STATUS,
    offset: SIZE,
    length: 1,
    limits: { metaContextId: 1 },
    want: EINVAL,
  },
  {
    name: 'BLOCK_STATUS longer than the maximum block size',
    type: BLOCK_STATUS,
    length: SIZE,
    limits: { metaContextId: 1 },
    want: 'ok',
  },

  // Commands we do not know
  { name: 'unknown command 8', type: 8, want: EINVAL },
  { name: 'unknown command 0xffff', type: 0xffff, want: EINVAL },
];

function requestOf(row: Row): NbdRequest {
  return {
    magic: row.magic ?? NBD_REQUEST_MAGIC,
    flags: row.flags ?? 0,
    type: row.type,
    cookieHi: 0,
    cookieLo: 1,
    offset: row.offset ?? 0,
    length: row.length ?? 0,
  };
}

describe('validateRequest', () => {
  for (const row of ROWS) {
    test(`${row.name}: ${typeof row.want === 'number' ? `errno ${row.want}` : row.want}`, () => {
      const v = validateRequest(requestOf(row), { ...BASE, ...row.limits });
      const got: Want = v.kind === 'error' ? v.error : v.kind;
      assert.equal(got, row.want);
      if (v.kind === 'error' || v.kind === 'fatal') assert.ok(v.reason.length > 0, 'a refusal says why');
    });
  }

  test('refusals send no message in a structured error chunk, except an unknown command', () => {
    const tooFar = validateRequest(requestOf({ name: '', type: READ, offset: SIZE, length: 1, want: EINVAL }), BASE);
    assert.equal(tooFar.kind === 'error' && tooFar.message, '');
    assert.match(
      tooFar.kind === 'error' ? tooFar.reason : '',
      /NBD_CMD_READ at offset 1048576 length 1 is outside the 1048576-byte export/,
    );
    const unknown = validateRequest(requestOf({ name: '', type: 42, want: EINVAL }), BASE);
    assert.equal(unknown.kind === 'error' && unknown.message, 'unknown command NBD_CMD_42');
  });

  test('a closed stream says what was wrong in the words the log has always used', () => {
    const magic = validateRequest(requestOf({ name: '', type: READ, magic: 0xdeadbeef, want: 'fatal' }), BASE);
    assert.deepEqual(magic, { kind: 'fatal', reason: 'bad request magic 0xdeadbeef' });
    const long = validateRequest(requestOf({ name: '', type: WRITE, length: MAX + 1, want: 'fatal' }), BASE);
    assert.deepEqual(long, {
      kind: 'fatal',
      reason: `NBD_CMD_WRITE length ${MAX + 1} exceeds the maximum block size ${MAX}`,
    });
  });

  test('accepting allocates nothing: the same verdict object every time', () => {
    const a = validateRequest(requestOf({ name: '', type: READ, length: 512, want: 'ok' }), BASE);
    const b = validateRequest(requestOf({ name: '', type: FLUSH, want: 'ok' }), BASE);
    assert.equal(a, b);
  });
});
