// The two handshake answers of a fake secondary speaking the real protocol (HAST-SPEC §6.3), for
// tests that play the secondary's side against a real primary: accept the first connection, then
// pair as a virgin with nothing to copy.
import { randomBytes } from 'node:crypto';
import { encodeMessage } from '../../src/peer/framing.js';
import { buildHandshakeReply, buildSyncReply } from '../../src/peer/messages.js';

/** Neither compression nor checksum: what the fake sends is plain. */
export const PLAIN = { compression: 'none', checksum: 'none' } as const;

/** Step 3: `{version 2, token}` on the first connection. */
export function firstReply(): Buffer {
  return Buffer.concat(encodeMessage(buildHandshakeReply(2, randomBytes(16)), undefined, PLAIN));
}

/** Step 7: the final reply (virgin, syncsrc primary, no bitmap) for a data area of this layout. */
export function virginSyncReply(md: { readonly dataSize: number; readonly extentSize: number }): Buffer {
  const nv = buildSyncReply({
    dataSize: md.dataSize,
    extentSize: md.extentSize,
    localCnt: 0n,
    remoteCnt: 0n,
    virgin: true,
    syncSrc: 'primary',
    mapSize: 0,
  });
  return Buffer.concat(encodeMessage(nv, undefined, PLAIN));
}
