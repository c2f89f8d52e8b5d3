#!/usr/bin/env node
// hastctl: create/dump work on the local component; role/status/list talk to hastd (HAST-SPEC §2).
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/index.js';
import { ConfigError } from '../config/errors.js';
import type { HastConfig, ResourceConfig } from '../config/types.js';
import { ControlConnectError, controlRequest, controlStream } from '../control/client.js';
import {
  CONTROL_ERROR,
  ROLES,
  SYNC_ACTIONS,
  type ControlReply,
  type ResourceStatus,
  type Role,
  type SyncAction,
} from '../control/messages.js';
import { openComponent } from '../component/open.js';
import { createResource } from '../metadata/create.js';
import { formatEvent, type HastEvent } from '../daemon/events.js';
import { formatDump } from '../metadata/dump.js';
import { readMetadata } from '../metadata/metadata.js';
import { parseSize, SIZE_FORMS } from '../metadata/size.js';
import { EX } from '../util/sysexits.js';
import { formatResource, formatTable, formatVerify } from './status-text.js';
import { packageVersion } from '../util/version.js';
import { checkConfig } from './check.js';
import { HASTCTL_USAGE } from './usage.js';

const DEFAULT_CONFIG = '/etc/hast.conf';

class UsageError extends Error {}

function usage(message?: string): never {
  throw new UsageError(message ?? '');
}

function warn(msg: string): void {
  process.stderr.write(`hastctl: ${msg}\n`);
}

function load(configPath: string, node: string | undefined): HastConfig {
  return loadConfig(configPath, node === undefined ? {} : { nodeName: node });
}

function pick(cfg: HastConfig, names: readonly string[], allowAll: boolean): (ResourceConfig | string)[] {
  const list = allowAll && (names.length === 0 || names[0] === 'all') ? cfg.resources.map((r) => r.name) : names;
  return list.map((n) => cfg.resources.find((r) => r.name === n) ?? n);
}

async function cmdCreate(cfg: HastConfig, names: readonly string[], v: Record<string, unknown>): Promise<number> {
  if (names.length === 0) usage('create: no resource name given');
  const sizeOpt = (key: string, label: string): number | undefined => {
    const raw = v[key];
    if (typeof raw !== 'string') return undefined;
    try {
      return parseSize(raw);
    } catch (err) {
      const tooLarge = (err as Error).message.startsWith('Size too large');
      throw new UsageError(`Invalid ${label} ${JSON.stringify(raw)}${tooLarge ? ' (too large)' : ''}. ${SIZE_FORMS}`);
    }
  };
  const extentSize = sizeOpt('extentsize', 'extentsize');
  const keepDirty = sizeOpt('keepdirty', 'keepdirty');
  const mediaSize = sizeOpt('mediasize', 'mediasize');
  let first = 0;
  const active = await activeRoles(cfg);
  for (const r of pick(cfg, names, false)) {
    if (typeof r === 'string') {
      warn(`Unknown resource ${r}.`);
      first ||= EX.DATAERR;
      continue;
    }
    const role = active.get(r.name);
    if (role !== undefined && role !== 'init') {
      warn(
        `[${r.name}] Refusing to create metadata: hastd runs the resource as ${role}, and new metadata would destroy the live ` +
          `metadata under it. Run "hastctl role init ${r.name}" first (then "hastctl role secondary ${r.name}" to resynchronise).`,
      );
      first ||= EX.TEMPFAIL;
      continue;
    }
    let comp;
    try {
      // The lock a worker holds (non-blocking flock), also held while we write.
      comp = await openComponent(r.localPath, { lock: true });
    } catch (err) {
      if ((err as { code?: string }).code === 'EBUSY') {
        warn(
          `[${r.name}] Refusing to create metadata: ${r.localPath} is locked by another process (a hastd worker, of this or ` +
            `another hastd?). Stop what uses it (hastctl role init ${r.name}) and retry.`,
        );
        first ||= EX.TEMPFAIL;
        continue;
      }
      warn(`Unable to open ${r.localPath}: ${(err as Error).message}`);
      first ||= EX.NOINPUT;
      continue;
    }
    try {
      await createResource({
        component: comp,
        resource: r.name,
        ...(extentSize !== undefined ? { extentSize } : {}),
        ...(keepDirty !== undefined ? { keepDirty } : {}),
        ...(mediaSize !== undefined ? { mediaSize } : {}),
        ...(v['full-sync'] === true ? { fullSync: true } : {}),
      });
    } catch (err) {
      warn(`[${r.name}] ${(err as Error).message}`);
      const code = (err as { exitCode?: number }).exitCode;
      first ||= typeof code === 'number' ? code : EX.IOERR;
    } finally {
      await comp.close();
    }
  }
  return first;
}

/**
 * The roles hastd runs the resources in, asked over the control socket. No daemon listening
 * (no socket, nobody accepting) → empty: create works on a stopped node as upstream's does.
 */
async function activeRoles(cfg: HastConfig): Promise<Map<string, Role>> {
  const out = new Map<string, Role>();
  let reply: ControlReply;
  try {
    reply = await controlRequest(cfg.controlPath, { cmd: 'status', resources: ['all'] });
  } catch (err) {
    if (err instanceof ControlConnectError) return out;
    throw err;
  }
  for (const r of reply.resources) if (r.role !== undefined) out.set(r.name, r.role);
  return out;
}

async function cmdDump(cfg: HastConfig, names: readonly string[]): Promise<number> {
  let first = 0;
  for (const r of pick(cfg, names, true)) {
    if (typeof r === 'string') {
      warn(`Unknown resource ${r}.`);
      first ||= EX.DATAERR;
      continue;
    }
    let comp;
    try {
      comp = await openComponent(r.localPath, { lock: false, readOnly: true });
    } catch (err) {
      warn(`Unable to open ${r.localPath}: ${(err as Error).message}`);
      first ||= EX.NOINPUT;
      continue;
    }
    try {
      const md = await readMetadata(comp, r.name);
      process.stdout.write(formatDump(md));
    } catch (err) {
      warn(`[${r.name}] Unable to read metadata: ${(err as Error).message}`);
      first ||= 255;
    } finally {
      await comp.close();
    }
  }
  return first;
}

/** What a per-resource error in a reply means, for the terminal. */
function resourceError(r: ResourceStatus): string {
  if (r.message !== undefined) return `[${r.name}] ${r.message}`;
  if (r.error === CONTROL_ERROR.NO_SUCH_RESOURCE) return `Unknown resource ${r.name} (not in hastd's configuration).`;
  return `[${r.name}] Received error ${r.error ?? 0} from hastd.`;
}

async function talk(cfg: HastConfig, req: Parameters<typeof controlRequest>[1]): Promise<ControlReply | number> {
  try {
    return await controlRequest(cfg.controlPath, req);
  } catch (err) {
    warn(
      err instanceof ControlConnectError
        ? `${err.message}: is hastd running? (start it, or check "control" in ${cfg.file})`
        : (err as Error).message,
    );
    return err instanceof ControlConnectError ? EX.OSERR : EX.UNAVAILABLE;
  }
}

function firstError(reply: ControlReply): number {
  if (reply.error !== undefined) {
    warn(`Error ${reply.error} received from hastd.`);
    return EX.SOFTWARE;
  }
  for (const r of reply.resources) if (r.error !== undefined) return r.error;
  return 0;
}

function warnResourceErrors(reply: ControlReply): void {
  for (const r of reply.resources) if (r.error !== undefined) warn(resourceError(r));
}

async function cmdRole(
  cfg: HastConfig,
  args: readonly string[],
  debug: number,
  force: boolean,
  discard: boolean,
): Promise<number> {
  const [role, ...names] = args;
  if (role === undefined) usage('role: no role given (init, primary or secondary)');
  if (!(ROLES as readonly string[]).includes(role))
    usage(`role: invalid role ${role} (expected init, primary or secondary)`);
  if (names.length === 0) usage(`role ${role}: no resource name given (a name, or all)`);
  if (discard && role !== 'secondary') usage('--discard-my-data goes with role secondary');
  const reply = await talk(cfg, {
    cmd: 'role',
    role: role as Role,
    resources: names,
    ...(force ? { force: true } : {}),
    ...(discard ? { discardMyData: true } : {}),
  });
  if (typeof reply === 'number') return reply;
  for (const r of reply.resources) {
    if (r.error !== undefined) warn(resourceError(r));
    else if (debug > 0) {
      process.stderr.write(
        r.previousRole === role
          ? `[${r.name}] Role unchanged (${role}).\n`
          : `[${r.name}] Role changed from ${r.previousRole} to ${role}.\n`,
      );
    }
  }
  return firstError(reply);
}

/** Ours: `hastctl verify [--json] NAME [--start OFFSET] [--stop OFFSET] [--mark]` (issue 17). */
async function cmdVerify(cfg: HastConfig, names: readonly string[], v: Record<string, unknown>): Promise<number> {
  const [name, ...extra] = names;
  if (name === undefined || extra.length > 0 || name === 'all') usage('verify takes one resource name');
  const offset = (key: 'start' | 'stop'): number | undefined => {
    const raw = v[key];
    if (typeof raw !== 'string') return undefined;
    try {
      return parseSize(raw);
    } catch {
      usage(`Invalid --${key} offset: ${raw}`);
    }
  };
  const start = offset('start') ?? 0;
  const stop = offset('stop') ?? null;
  if (stop !== null && stop < start) usage('--stop is before --start');
  if (cfg.resources.find((r) => r.name === name) === undefined) {
    warn(`Unknown resource ${name}.`);
    return EX.DATAERR;
  }
  const reply = await talk(cfg, { cmd: 'verify', resources: [name], start, stop, mark: v.mark === true });
  if (typeof reply === 'number') return reply;
  if (reply.error !== undefined) return firstError(reply);
  const r = reply.resources[0];
  if (r === undefined) return EX.SOFTWARE;
  if (r.error !== undefined) {
    warn(r.message !== undefined ? `[${r.name}] ${r.message}` : `[${r.name}] Received error ${r.error} from hastd.`);
    return r.error;
  }
  const rep = r.verify;
  if (rep === undefined) return EX.SOFTWARE;
  if (v.json === true) process.stdout.write(`${JSON.stringify({ name: r.name, ...rep }, null, 2)}\n`);
  else process.stdout.write(formatVerify(r.name, rep));
  if (rep.outcome === 'interrupted') {
    warn(
      `[${r.name}] Verify interrupted: ${rep.reason ?? 'unknown reason'}; run it again (--start ${rep.start + rep.comparedBytes + rep.skippedBytes} resumes about where it stopped).`,
    );
    return EX.TEMPFAIL;
  }
  return rep.outcome === 'identical' ? 0 : 1;
}

/** Ours: `hastctl sync pause|resume NAME...` (issue 17), on the primary node. */
async function cmdSync(cfg: HastConfig, args: readonly string[], debug: number): Promise<number> {
  const [action, ...names] = args;
  if (action === undefined || names.length === 0 || !(SYNC_ACTIONS as readonly string[]).includes(action)) usage();
  const reply = await talk(cfg, { cmd: 'sync', action: action as SyncAction, resources: names });
  if (typeof reply === 'number') return reply;
  for (const r of reply.resources) {
    if (r.error !== undefined)
      warn(r.message !== undefined ? `[${r.name}] ${r.message}` : `[${r.name}] Received error ${r.error} from hastd.`);
    else if (debug > 0)
      process.stderr.write(`[${r.name}] Synchronization ${action === 'pause' ? 'paused' : 'resumed'}.\n`);
  }
  return firstError(reply);
}

async function cmdStatus(cfg: HastConfig, names: readonly string[], json: boolean, table: boolean): Promise<number> {
  const reply = await talk(cfg, { cmd: 'status', resources: names.length === 0 ? ['all'] : names });
  if (typeof reply === 'number') return reply;
  if (reply.error !== undefined) return firstError(reply);
  if (json) process.stdout.write(`${JSON.stringify(reply.resources, null, 2)}\n`);
  else if (table) process.stdout.write(formatTable(reply.resources));
  else for (const r of reply.resources) process.stdout.write(formatResource(r));
  warnResourceErrors(reply);
  return firstError(reply);
}

/** `hastctl events`: print the stream until hastd stops (exit 0) or refuses a name (exit 1). */
async function cmdEvents(
  cfg: HastConfig,
  names: readonly string[],
  json: boolean,
  timestamps: boolean,
): Promise<number> {
  let code = 0;
  try {
    await controlStream(cfg.controlPath, { cmd: 'events', resources: names.length === 0 ? ['all'] : names }, (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        warn(`Malformed event from hastd: ${line.slice(0, 80)}`);
        return;
      }
      if (Array.isArray(msg.resources)) {
        // A refusal (unknown resource) instead of a stream.
        const reply = msg as unknown as ControlReply;
        warnResourceErrors(reply);
        code = firstError(reply);
        return;
      }
      process.stdout.write(json ? `${line}\n` : formatEvent(msg as unknown as HastEvent, timestamps));
    });
  } catch (err) {
    warn(
      err instanceof ControlConnectError
        ? `${err.message}: is hastd running? (start it, or check "control" in ${cfg.file})`
        : (err as Error).message,
    );
    return err instanceof ControlConnectError ? EX.OSERR : EX.UNAVAILABLE;
  }
  return code;
}

/** Run hastctl with argv (without node and script); returns the exit code. */
export async function hastctl(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === undefined || sub === '-h' || sub === '--help') usage();
    if (sub === '--version' || sub === '-V') {
      process.stdout.write(`hastctl ${packageVersion()}\n`);
      return 0;
    }
    const known = ['create', 'role', 'list', 'status', 'dump', 'sync', 'verify', 'check', 'events'];
    if (!known.includes(sub)) usage(`unknown command: ${sub}`);
    const { values, positionals } = parseArgs({
      args: [...rest],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        debug: { type: 'boolean', short: 'd', multiple: true },
        help: { type: 'boolean', short: 'h' },
        node: { type: 'string' },
        json: { type: 'boolean' },
        terse: { type: 'boolean', short: 't' },
        extentsize: { type: 'string', short: 'e' },
        keepdirty: { type: 'string', short: 'k' },
        mediasize: { type: 'string', short: 'm' },
        force: { type: 'boolean' },
        'full-sync': { type: 'boolean' },
        start: { type: 'string' },
        stop: { type: 'string' },
        mark: { type: 'boolean' },
        'discard-my-data': { type: 'boolean' },
        timestamps: { type: 'boolean' },
      },
    });
    if (values.help === true) usage();
    if (
      sub !== 'create' &&
      (values.extentsize !== undefined || values.keepdirty !== undefined || values.mediasize !== undefined)
    ) {
      usage('-e, -k and -m are options of create');
    }
    if (values.json === true && sub !== 'status' && sub !== 'list' && sub !== 'verify' && sub !== 'events')
      usage('--json is an option of status, list, verify and events');
    if (values.terse === true && sub !== 'status' && sub !== 'list') usage('-t is an option of status and list');
    if (values.timestamps === true && sub !== 'events') usage('--timestamps is an option of events');
    if ((values.start !== undefined || values.stop !== undefined || values.mark === true) && sub !== 'verify')
      usage('--start, --stop and --mark are options of verify');
    if (values.force === true && sub !== 'role') usage('--force is an option of role');
    if (values['discard-my-data'] === true && sub !== 'role') usage('--discard-my-data is an option of role');
    if (values['full-sync'] === true && sub !== 'create') usage('--full-sync is an option of create');
    const debug = values.debug?.length ?? 0;
    if (sub === 'check') return await checkConfig(values.config ?? DEFAULT_CONFIG, values.node, positionals, warn);
    const cfg = load(values.config ?? DEFAULT_CONFIG, values.node);
    switch (sub) {
      case 'create':
        return await cmdCreate(cfg, positionals, values);
      case 'dump':
        return await cmdDump(cfg, positionals);
      case 'role':
        return await cmdRole(cfg, positionals, debug, values.force === true, values['discard-my-data'] === true);
      case 'sync':
        return await cmdSync(cfg, positionals, debug);
      case 'verify':
        return await cmdVerify(cfg, positionals, values);
      case 'events':
        return await cmdEvents(cfg, positionals, values.json === true, values.timestamps === true);
      default:
        return await cmdStatus(cfg, positionals, values.json === true, values.terse === true);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message !== '') warn(err.message);
      process.stderr.write(HASTCTL_USAGE);
      return EX.USAGE;
    }
    if (err instanceof ConfigError) {
      warn(err.message);
      return err.exitCode;
    }
    if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      warn(err.message);
      process.stderr.write(HASTCTL_USAGE);
      return EX.USAGE;
    }
    throw err;
  }
}

// Exit explicitly (stdout and stderr are synchronous for files and pipes on Linux): Node 20 can
// spin at 100% CPU in its exit-time handle cleanup (nodejs/node#47748), and HA scripts wait on us.
hastctl(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    warn(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(EX.SOFTWARE);
  },
);
