// Secondary worker process (HAST-SPEC §5.2, §6.3–6.5): receives the two accepted peer sockets from
// the parent, opens the component, runs one session, and answers the parent's status queries.
import type { Socket } from 'node:net';
import type { Component } from '../component/component.js';
import { openComponent } from '../component/open.js';
import type { ResourceConfig } from '../config/types.js';
import { emptyStats, syncedPercent, type WorkerStatus } from '../control/messages.js';
import type { HookEvent, ParentToWorker, PeerFirstMessage, WorkerInit, WorkerToParent } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import { readMetadata } from '../metadata/metadata.js';
import { readFirstHeader } from '../peer/handshake.js';
import { offersTls, startTls } from '../peer/tls.js';
import { EX } from '../util/sysexits.js';
import { SecondarySession } from './session.js';

/** The TLS handshake gets as long as the rest of the handshake (HAST-SPEC §6.5). */
const TLS_TIMEOUT_MS = 20_000;

interface PeerSockets {
  readonly inSock: Socket;
  readonly outSock: Socket;
  readonly first: PeerFirstMessage;
}

function send(msg: WorkerToParent): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

function exitNow(code: number): never {
  process.exit(code);
}

/** Entry point called by src/cli/worker.ts after the parent's `init` message. */
export async function runSecondaryWorker(init: WorkerInit): Promise<void> {
  let cfg: ResourceConfig = init.resource;
  let session: SecondarySession | null = null;
  /** From the metadata once read; shown by `hastctl status`. */
  let geometry = { extentSize: 0, keepDirty: 0 };
  let stopping = false;
  let gotIn: Socket | null = null;
  let gotOut: { sock: Socket; first: PeerFirstMessage } | null = null;
  let resolveSockets: (s: PeerSockets) => void = () => undefined;
  const sockets = new Promise<PeerSockets>((resolve) => {
    resolveSockets = resolve;
  });

  // Registered before the first await: the parent sends the sockets right behind `init`.
  process.on('message', (msg: ParentToWorker, handle?: unknown) => {
    switch (msg.type) {
      case 'peer-socket': {
        const sock = handle as Socket | undefined;
        if (sock === undefined) {
          log.error(`Parent sent a '${msg.which}' peer socket message without a socket.`);
          return;
        }
        if (msg.which === 'in') gotIn = sock;
        else if (msg.first !== undefined) gotOut = { sock, first: msg.first };
        if (gotIn !== null && gotOut !== null)
          resolveSockets({ inSock: gotIn, outSock: gotOut.sock, first: gotOut.first });
        break;
      }
      case 'status': {
        const stats = session?.stats() ?? null;
        // A sync target is neither complete nor clean (issue 13: it said `complete, dirty: 0`).
        const c = session?.consistency() ?? { inconsistent: false, totalBytes: null, leftBytes: null };
        const pct = syncedPercent(c.totalBytes, c.leftBytes);
        const status: WorkerStatus = {
          status: c.inconsistent ? 'degraded' : 'complete',
          dirty: c.inconsistent ? (c.leftBytes ?? 0) : 0,
          disk: { consistent: !c.inconsistent, synchronized: c.inconsistent ? pct : null },
          extentSize: geometry.extentSize,
          keepDirty: geometry.keepDirty,
          stats: stats ?? emptyStats(),
          sync: null,
          lastSync: null,
          exportAddr: null,
          device: null,
        };
        void send({ type: 'status-reply', id: msg.id, status });
        break;
      }
      case 'reload':
        cfg = msg.resource;
        session?.reload(cfg);
        break;
      case 'init':
        break;
    }
  });

  // Role change or a new incoming connection: exit quietly, no `disconnect` event (HAST-SPEC §9).
  const quit = (): void => {
    if (stopping) return;
    stopping = true;
    const s = session;
    if (s === null) exitNow(EX.OK);
    void s.shutdown().finally(() => exitNow(EX.OK));
  };
  process.on('SIGINT', quit);
  process.on('SIGTERM', quit);
  process.on('disconnect', quit);

  const got = await sockets;
  const { first } = got;
  let { inSock, outSock } = got;
  if (first.tls === true) {
    try {
      [inSock, outSock] = await Promise.all([
        startTls(inSock, cfg, 'client', TLS_TIMEOUT_MS),
        startTls(outSock, cfg, 'client', TLS_TIMEOUT_MS),
      ]);
      // The primary's word that it accepted our certificate, before anything else on "in".
      const ok = await readFirstHeader(inSock, TLS_TIMEOUT_MS).catch((err: unknown) => {
        throw new Error(`the primary did not accept our certificate (${(err as Error).message})`);
      });
      if (!offersTls(ok)) throw new Error('the primary did not confirm TLS');
    } catch (err) {
      log.error(`Unable to secure the connection with ${first.peerAddr}`, err);
      exitNow(EX.TEMPFAIL);
    }
  }
  let comp: Component;
  try {
    // Read-write with an exclusive lock, as the primary opens it.
    comp = await openComponent(cfg.localPath, { lock: true });
  } catch (err) {
    log.error(`Unable to open ${cfg.localPath}`, err);
    exitNow(EX.NOINPUT);
  }
  let md;
  try {
    md = await readMetadata(comp, cfg.name);
    geometry = { extentSize: md.extentSize, keepDirty: md.keepDirty };
  } catch (err) {
    log.error('Unable to read metadata', err);
    exitNow(EX.NOINPUT);
  }
  session = new SecondarySession({
    cfg,
    comp,
    md,
    inSock,
    outSock,
    first,
    emit: (event: HookEvent) => send({ type: 'event', event, args: [] }),
    ...(init.discardMyData === true ? { discardMyData: () => send({ type: 'discarded' }) } : {}),
    exit: (code) => exitNow(code),
  });
  if (stopping) exitNow(EX.OK);
  await session.start();
}
