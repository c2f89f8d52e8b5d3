// What a SIGHUP reload must do, as a pure comparison of two resolved configs. HAST-SPEC §10.3
// (upstream hastd.c resource_needs_restart / resource_needs_reload). The parent acts on it.
import type { HastConfig, ResourceConfig } from './types.js';

/** Every resource field but the name, which is how resources are matched across the two configs. */
export type ResourceField = Exclude<keyof ResourceConfig, 'name'>;

/**
 * How a change of each field is applied. `restart`: whatever the role (upstream: name, local;
 * ours: export, device). `reload`: a primary takes it live (control command 11), init and secondary
 * restart. Typed over every field, so a field added to ResourceConfig does not compile until it is
 * classified here: none can change without the reload noticing. Listed in the order of `changed`.
 */
const FIELD_CHANGE = {
  provName: 'restart',
  localPath: 'restart',
  exportAddr: 'restart',
  device: 'restart',
  remoteAddr: 'reload',
  sourceAddr: 'reload',
  replication: 'reload',
  checksum: 'reload',
  compression: 'reload',
  timeout: 'reload',
  exec: 'reload',
  metaFlush: 'reload',
  authKey: 'reload',
  tlsCert: 'reload',
  tlsKey: 'reload',
  tlsCa: 'reload',
  tlsPeer: 'reload',
  syncRate: 'reload',
  syncMinRate: 'reload',
  // Negotiated at the handshake: a primary offers the new setting at its next connection.
  checksumSync: 'reload',
} as const satisfies Record<ResourceField, 'restart' | 'reload'>;
const FIELDS = Object.keys(FIELD_CHANGE) as ResourceField[];

/**
 * Per-resource outcome of a reload. The role decides between restart and live reload, so the
 * daemon calls reloadAction() with the current role.
 */
export interface ResourceChange {
  readonly kind: 'added' | 'removed' | 'unchanged' | 'changed';
  /** True when a field whose change restarts in every role changed. */
  readonly restartAlways: boolean;
  /** The fields that differ, restart fields first (empty unless 'changed'). */
  readonly changed: readonly ResourceField[];
}

export interface ConfigDiff {
  /**
   * The control socket's path differs: open the new socket first, then close the old. Compared as
   * paths, not as configured: `uds:///p`, `unix:///p` and `/p` are one socket, and rebinding it
   * would unlink the fresh socket when the old one is closed.
   */
  readonly controlChanged: boolean;
  readonly pidFileChanged: boolean;
  /**
   * The `listen` list differs as configured, order included: the listeners are then given the new
   * list, and they keep, open and close sockets address by address (daemon/listen.ts).
   */
  readonly listenChanged: boolean;
  /** By resource name: old resources in old order, then added ones in new order. */
  readonly resources: ReadonlyMap<string, ResourceChange>;
}

export type ReloadAction = 'add' | 'remove' | 'restart' | 'reload' | 'none';

/**
 * Compares the running config with a newly loaded one. Pure; never throws.
 */
export function diffConfig(oldCfg: HastConfig, newCfg: HastConfig): ConfigDiff {
  const resources = new Map<string, ResourceChange>();
  const newByName = new Map(newCfg.resources.map((r) => [r.name, r] as const));
  const oldNames = new Set(oldCfg.resources.map((r) => r.name));
  for (const o of oldCfg.resources) {
    const n = newByName.get(o.name);
    if (n === undefined) {
      resources.set(o.name, { kind: 'removed', restartAlways: false, changed: [] });
      continue;
    }
    const changed = FIELDS.filter((f) => o[f] !== n[f]);
    resources.set(o.name, {
      kind: changed.length === 0 ? 'unchanged' : 'changed',
      restartAlways: changed.some((f) => FIELD_CHANGE[f] === 'restart'),
      changed,
    });
  }
  for (const n of newCfg.resources) {
    if (!oldNames.has(n.name)) resources.set(n.name, { kind: 'added', restartAlways: false, changed: [] });
  }
  return {
    controlChanged: oldCfg.controlPath !== newCfg.controlPath || oldCfg.controlGroup !== newCfg.controlGroup,
    pidFileChanged: oldCfg.pidFile !== newCfg.pidFile,
    listenChanged:
      oldCfg.listen.length !== newCfg.listen.length || oldCfg.listen.some((a, i) => a !== newCfg.listen[i]),
    resources,
  };
}

/**
 * What to do with one resource given its current role: a changed primary is reloaded live unless
 * a restart field changed; a changed init/secondary resource is restarted (role → init → role).
 */
export function reloadAction(change: ResourceChange, role: 'init' | 'primary' | 'secondary'): ReloadAction {
  switch (change.kind) {
    case 'added':
      return 'add';
    case 'removed':
      return 'remove';
    case 'unchanged':
      return 'none';
    case 'changed':
      return change.restartAlways || role !== 'primary' ? 'restart' : 'reload';
  }
}
