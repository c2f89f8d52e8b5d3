// The seven upstream hook events and the argv each one is run with. HAST-SPEC §9.
import type { HookEvent } from '../daemon/worker-ipc.js';

export type { HookEvent };

/** Every event upstream hastd reports; there are no start/stop/reload/error events. */
export const HOOK_EVENTS = [
  'role',
  'connect',
  'disconnect',
  'syncstart',
  'syncdone',
  'syncintr',
  'split-brain',
] as const satisfies readonly HookEvent[];

/** Roles as they appear in a `role` hook's argv. */
export type HookRole = 'init' | 'primary' | 'secondary';

/** True when `s` names one of the seven upstream events. */
export function isHookEvent(s: string): s is HookEvent {
  return (HOOK_EVENTS as readonly string[]).includes(s);
}

/**
 * argv[1..] for an event, in upstream's order (argv[0] is the exec path, added by the runner):
 * `role <resource> <oldrole> <newrole>`, every other event `<event> <resource>`.
 */
export function hookArgs(event: 'role', resource: string, oldRole: HookRole, newRole: HookRole): string[];
export function hookArgs(event: Exclude<HookEvent, 'role'>, resource: string): string[];
export function hookArgs(event: HookEvent, resource: string, ...roles: string[]): string[] {
  return [event, resource, ...roles];
}
