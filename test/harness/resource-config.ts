// A resource's resolved configuration for unit tests of the data path: one resource r0 with the
// defaults most tests want (fullsync, no checksum, no compression, metaflush off, no device);
// each test overrides what it is about.
import type { ResourceConfig } from '../../src/config/types.js';

export function resourceConfig(over: Partial<ResourceConfig> = {}): ResourceConfig {
  return {
    name: 'r0',
    provName: 'r0',
    localPath: '',
    remoteAddr: '127.0.0.1',
    sourceAddr: null,
    replication: 'fullsync',
    checksum: 'none',
    compression: 'none',
    timeout: 20,
    exec: '',
    metaFlush: false,
    exportAddr: '',
    device: 'none',
    ...over,
  };
}
