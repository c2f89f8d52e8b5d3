// What a SIGHUP reload must do, as a pure comparison of two resolved configs. HAST-SPEC §10.3
// (upstream hastd.c resource_needs_restart / resource_needs_reload).
import type { HastConfig, ResourceConfig } from './types.js';

/** Fields whose change restarts the resource whatever its role (upstream: name, local; ours: export, device). */
export const RESTART_FIELDS = ['provName', 'localPath', 'exportAddr', 'device'] as const;
/** Fields a primary can take live (control command 11); init/secondary restart instead. */
export const RELOAD_FIELDS = [
  'remoteAddr', 'sourceAddr', 'replication', 'checksum', 'compression', 'timeout', 'exec', 'metaFlush',
] as const;
export type ResourceField = (typeof RESTART_FIELDS)[number] | (typeof RELOAD_FIELDS)[number];

/**
 * Per-resource outcome of a reload. The role decides between restart and live reload, so the
 * daemon calls reloadAction() with the current role.
 */
export interface ResourceChange {
  readonly kind: 'added' | 'removed' | 'unchanged' | 'changed';
  /** True when a RESTART_FIELDS member changed: restart in every role. */
  readonly restartAlways: boolean;
  /** The fields that differ, in RESTART_FIELDS then RELOAD_FIELDS order (empty unless 'changed'). */
  readonly changed: readonly ResourceField[];
}

export interface ConfigDiff {
  /** Control address differs: open the new socket first, then close the old. */
  readonly controlChanged: boolean;
  readonly pidFileChanged: boolean;
  /** Listen addresses compared as configured strings, as upstream does. */
  readonly listenAdded: readonly string[];
  readonly listenRemoved: readonly string[];
  readonly listenKept: readonly string[];
  /** By resource name: old resources in old order, then added ones in new order. */
  readonly resources: ReadonlyMap<string, ResourceChange>;
}

export type ReloadAction = 'add' | 'remove' | 'restart' | 'reload' | 'none';

/**
 * Compares the running config with a newly loaded one. Pure; never throws.
 */
export function diffConfig(oldCfg: HastConfig, newCfg: HastConfig): ConfigDiff {
  const oldListen = new Set(oldCfg.listen);
  const newListen = new Set(newCfg.listen);
  const resources = new Map<string, ResourceChange>();
  const newByName = new Map(newCfg.resources.map((r) => [r.name, r] as const));
  const oldNames = new Set(oldCfg.resources.map((r) => r.name));
  for (const o of oldCfg.resources) {
    const n = newByName.get(o.name);
    if (n === undefined) {
      resources.set(o.name, { kind: 'removed', restartAlways: false, changed: [] });
      continue;
    }
    const changed = changedFields(o, n);
    resources.set(o.name, {
      kind: changed.length === 0 ? 'unchanged' : 'changed',
      restartAlways: changed.some((f) => (RESTART_FIELDS as readonly string[]).includes(f)),
      changed,
    });
  }
  for (const n of newCfg.resources) {
    if (!oldNames.has(n.name)) resources.set(n.name, { kind: 'added', restartAlways: false, changed: [] });
  }
  return {
    controlChanged: oldCfg.controlAddr !== newCfg.controlAddr,
    pidFileChanged: oldCfg.pidFile !== newCfg.pidFile,
    listenAdded: newCfg.listen.filter((a) => !oldListen.has(a)),
    listenRemoved: oldCfg.listen.filter((a) => !newListen.has(a)),
    listenKept: newCfg.listen.filter((a) => oldListen.has(a)),
    resources,
  };
}

function changedFields(o: ResourceConfig, n: ResourceConfig): ResourceField[] {
  const out: ResourceField[] = [];
  for (const f of [...RESTART_FIELDS, ...RELOAD_FIELDS]) if (o[f] !== n[f]) out.push(f);
  return out;
}

/**
 * What to do with one resource given its current role: a changed primary is reloaded live unless
 * a restart field changed; a changed init/secondary resource is restarted (role → init → role).
 */
export function reloadAction(change: ResourceChange, role: 'init' | 'primary' | 'secondary'): ReloadAction {
  switch (change.kind) {
    case 'added': return 'add';
    case 'removed': return 'remove';
    case 'unchanged': return 'none';
    case 'changed': return change.restartAlways || role !== 'primary' ? 'restart' : 'reload';
  }
}
