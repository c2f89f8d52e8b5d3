// The resolved, read-only hast.conf model used by hastd and hastctl (HAST-SPEC §1.3–1.4).

const REPLICATION_MODES = ['fullsync', 'memsync', 'async'] as const;
export type ReplicationMode = (typeof REPLICATION_MODES)[number];
const CHECKSUM_ALGS = ['none', 'crc32', 'sha256'] as const;
export type ChecksumAlg = (typeof CHECKSUM_ALGS)[number];
const COMPRESSION_ALGS = ['none', 'hole', 'lzf'] as const;
export type CompressionAlg = (typeof COMPRESSION_ALGS)[number];
/** Our extension: how /dev/hast/<provname> is made on the primary. */
export const DEVICE_MODES = ['auto', 'nbd', 'fuse', 'none'] as const;
export type DeviceMode = (typeof DEVICE_MODES)[number];

export interface ResourceConfig {
  /** Resource name (`resource <name>`). */
  readonly name: string;
  /** Provider name (`name`), defaults to the resource name: /dev/hast/<provName>. */
  readonly provName: string;
  /** Path of the local component (`local`). */
  readonly localPath: string;
  /** `remote` exactly as configured, or 'none'. */
  readonly remoteAddr: string;
  /** `source` as configured, or null. */
  readonly sourceAddr: string | null;
  readonly replication: ReplicationMode;
  readonly checksum: ChecksumAlg;
  readonly compression: CompressionAlg;
  /** Seconds, > 0. */
  readonly timeout: number;
  /** Hook program path, '' for none. */
  readonly exec: string;
  readonly metaFlush: boolean;
  /** Our extension `export`: where the primary serves NBD, `uds:///path` or `tcp://host:port`. */
  readonly exportAddr: string;
  /** Our extension `device`. */
  readonly device: DeviceMode;
  /** Our extension `authkey`: the peer secret file; absent when not configured (FreeBSD handshake). */
  readonly authKey?: string;
  /** Our extension: TLS on the replication link (`tlscert`, `tlskey`, and `tlsca` and/or `tlspeer`). */
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsCa?: string;
  /** SHA-256 fingerprint of the peer's certificate, upper-case hex with colons. */
  readonly tlsPeer?: string;
  /** Our extension `syncrate`: most bytes per second a resync copies; 0 = unlimited (the default). */
  readonly syncRate?: number;
  /**
   * Our extension `syncminrate`: while the application does I/O, the resync slows down to this rate
   * (and never below it); 0 = not set: the resync does not slow down for the application.
   */
  readonly syncMinRate?: number;
  /**
   * Our extension `checksumsync`: compare chunk hashes during a resync and copy only the chunks
   * that differ, when the peer agrees (negotiated per connection); set (true) only when on.
   */
  readonly checksumSync?: true;
}

export interface HastConfig {
  /** Absolute path of the file this was loaded from. */
  readonly file: string;
  /** Names this node answers to (hostname, short hostname, machine id, hostid<N>, or --node). */
  readonly nodeNames: readonly string[];
  /** Control socket path (uds:// prefix removed). */
  readonly controlPath: string;
  /** Control address as configured (or the default). */
  readonly controlAddr: string;
  /** Our extension `controlgroup`: group name or gid allowed on the control socket (0660). */
  readonly controlGroup?: string;
  readonly pidFile: string;
  /** Listen addresses as configured (or the defaults). */
  readonly listen: readonly string[];
  /** Ours: where to serve Prometheus metrics (`metrics`), or null (the default: none). */
  readonly metrics: string | null;
  /** Resources in configuration order. */
  readonly resources: readonly ResourceConfig[];
}
