// Prometheus metrics (our `metrics` keyword): the parent serves GET /metrics over HTTP in the text
// exposition format (version 0.0.4), built from the same status its workers report to `hastctl
// status`: nothing is counted per request beyond the workers' own statistics, and the workers are
// asked once per scrape, not per request.
import { createServer, type Server } from 'node:http';
import { METRICS_PORT, parsePeerAddress } from '../config/address.js';
import type { ResourceStatus } from '../control/messages.js';
import { ROLES } from '../control/messages.js';
import { log } from '../log/log.js';
import type { HistogramSnapshot } from '../util/histogram.js';
import { packageVersion } from '../util/version.js';

type Labels = Readonly<Record<string, string>>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The text exposition format, written once: families of samples with HELP and TYPE. */
class Exposition {
  readonly #out: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: readonly [Labels, number][]): void {
    this.#head(name, type, help);
    for (const [labels, value] of samples) this.#sample(name, labels, value);
  }

  /** A histogram family: cumulative `_bucket{le}` series, `_sum` and `_count`. */
  histogram(name: string, help: string, series: readonly [Labels, HistogramSnapshot][]): void {
    this.#head(name, 'histogram', help);
    for (const [labels, h] of series) {
      let cumulative = 0;
      h.bounds.forEach((le, i) => {
        cumulative += h.counts[i] ?? 0;
        this.#sample(`${name}_bucket`, { ...labels, le: String(le) }, cumulative);
      });
      this.#sample(`${name}_bucket`, { ...labels, le: '+Inf' }, h.count);
      this.#sample(`${name}_sum`, labels, h.sum);
      this.#sample(`${name}_count`, labels, h.count);
    }
  }

  #head(name: string, type: string, help: string): void {
    this.#out.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
  }

  #sample(name: string, labels: Labels, value: number): void {
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(',');
    this.#out.push(`${name}${l === '' ? '' : `{${l}}`} ${Number.isFinite(value) ? String(value) : 'NaN'}`);
  }

  text(): string {
    return `${this.#out.join('\n')}\n`;
  }
}

const OPS = ['read', 'write', 'delete', 'flush'] as const;

/** The exposition of hastd's state: one family per metric, one sample per resource (and label). */
export function formatMetrics(resources: readonly ResourceStatus[], restarts: ReadonlyMap<string, number>): string {
  const e = new Exposition();
  const per = (f: (s: ResourceStatus) => number | null): [Labels, number][] =>
    resources.flatMap((s) => {
      const v = f(s);
      return v === null ? [] : [[{ resource: s.name }, v] as [Labels, number]];
    });
  const perOp = (f: (s: ResourceStatus, op: (typeof OPS)[number]) => number | null): [Labels, number][] =>
    resources.flatMap((s) =>
      OPS.flatMap((op) => {
        const v = f(s, op);
        return v === null ? [] : [[{ resource: s.name, op }, v] as [Labels, number]];
      }),
    );
  e.family('hastd_build_info', 'gauge', 'The running hastd: its version in a label, value 1.', [
    [{ version: packageVersion() }, 1],
  ]);
  e.family(
    'hastd_resource_role',
    'gauge',
    'Role of the resource on this node: 1 for the current role, 0 for the others.',
    resources.flatMap((s) =>
      ROLES.map((role) => [{ resource: s.name, role }, s.role === role ? 1 : 0] as [Labels, number]),
    ),
  );
  e.family(
    'hastd_peer_connected',
    'gauge',
    'Whether the resource worker is connected to its peer (1) or not (0); no worker: absent.',
    per((s) => (s.worker === null || s.worker === undefined ? null : s.worker.status === 'complete' ? 1 : 0)),
  );
  e.family(
    'hastd_consistent',
    'gauge',
    'Whether the local copy is consistent (1) or an unfinished sync target (0); unknown: absent.',
    per((s) => (s.worker?.disk === undefined ? null : s.worker.disk.consistent ? 1 : 0)),
  );
  e.family(
    'hastd_dirty_bytes',
    'gauge',
    'Bytes of extents marked dirty in the activemap (to be synchronised or in flight).',
    per((s) => s.worker?.dirty ?? null),
  );
  e.family(
    'hastd_sync_left_bytes',
    'gauge',
    'Bytes the running synchronisation still has to copy (0 when none runs).',
    per((s) => (s.worker === null || s.worker === undefined ? null : (s.worker.sync?.leftBytes ?? 0))),
  );
  e.family(
    'hastd_sync_rate_bytes_per_second',
    'gauge',
    'Rate of the running synchronisation since it started (0 when none runs).',
    per((s) => (s.worker === null || s.worker === undefined ? null : (s.worker.sync?.rate ?? 0))),
  );
  e.family(
    'hastd_last_sync_transferred_bytes',
    'gauge',
    "Bytes whose data the worker's last completed synchronisation sent over the network; none yet: absent.",
    per((s) => s.worker?.lastSync?.transferred ?? null),
  );
  e.family(
    'hastd_last_sync_skipped_bytes',
    'gauge',
    'Bytes the last completed synchronisation found identical by checksum and did not copy (checksumsync).',
    per((s) => s.worker?.lastSync?.skipped ?? null),
  );
  const stat = (s: ResourceStatus, key: string): number | null => {
    const st = s.worker?.stats as unknown as Record<string, number> | undefined;
    return st === undefined ? null : (st[key] ?? 0);
  };
  e.family(
    'hastd_requests_total',
    'counter',
    'Requests served by the resource worker since it started, by operation.',
    perOp((s, op) => stat(s, `${op}s`)),
  );
  e.family(
    'hastd_request_errors_total',
    'counter',
    'Requests that failed since the resource worker started, by operation.',
    perOp((s, op) => stat(s, `${op}Errors`)),
  );
  e.family(
    'hastd_activemap_updates_total',
    'counter',
    'On-disk activemap updates since the resource worker started.',
    per((s) => stat(s, 'activemapUpdates')),
  );
  e.family(
    'hastd_worker_restarts_total',
    'counter',
    'Primary worker processes restarted by hastd after they died, since hastd started.',
    resources.map((s) => [{ resource: s.name }, restarts.get(s.name) ?? 0] as [Labels, number]),
  );
  e.histogram(
    'hastd_request_duration_seconds',
    'Primary request latency by leg: local (the component) and remote (sent until the peer replied).',
    resources.flatMap((s) => {
      const l = s.worker?.latency;
      if (l === undefined) return [];
      return [
        [{ resource: s.name, leg: 'local' }, l.local],
        [{ resource: s.name, leg: 'remote' }, l.remote],
      ] as [Labels, HistogramSnapshot][];
    }),
  );
  e.family(
    'hastd_async_backlog_bytes',
    'gauge',
    'async replication: bytes acknowledged locally and not yet confirmed by the peer.',
    per((s) => s.worker?.asyncBacklog?.bytes ?? null),
  );
  return e.text();
}

/** The HTTP listener of `metrics <addr>`; `collect` gives the exposition text of one scrape. */
export async function listenMetrics(addr: string, collect: () => Promise<string>): Promise<Server> {
  const { host, port } = parsePeerAddress(addr, METRICS_PORT);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: hastd serves /metrics only.\n');
      return;
    }
    collect().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err: unknown) => {
        log.warning('Unable to collect metrics', err);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('Unable to collect metrics.\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info(`Serving metrics on http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics.`);
  return server;
}
