// hast.conf loading: the module's public surface. HAST-SPEC §1, §10.3.
export { ConfigError, type ConfigExitCode } from './errors.js';
export { loadConfig, parseConfig, type ParseOptions } from './load.js';
export { acceptableNodeNames, isThisNode } from './node-match.js';
export {
  parsePeerAddress,
  parseControlAddress,
  parseExportAddress,
  HAST_PORT,
  NBD_PORT,
  type PeerAddress,
  type ExportAddress,
} from './address.js';
export { diffConfig, reloadAction, type ConfigDiff, type ResourceChange, type ReloadAction } from './diff.js';
export { printConfig } from './print.js';
export type { HastConfig, ResourceConfig } from './types.js';
