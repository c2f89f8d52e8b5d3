// The metrics exposition and the events text form, from given statuses: label escaping, the role
// state set, histogram buckets made cumulative, and `hastctl events` lines.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ResourceStatus, WorkerStatus } from '../../../src/control/messages.js';
import { emptyStats } from '../../../src/control/messages.js';
import { formatEvent } from '../../../src/daemon/events.js';
import { formatMetrics } from '../../../src/daemon/metrics.js';
import { Histogram } from '../../../src/util/histogram.js';

function worker(h: Histogram): WorkerStatus {
  return {
    status: 'degraded',
    dirty: 4096,
    extentSize: 2 << 20,
    keepDirty: 64,
    stats: { ...emptyStats(), writes: 3, writeErrors: 1 },
    sync: null,
    lastSync: null,
    exportAddr: null,
    device: null,
    disk: { consistent: false, synchronized: null },
    latency: { local: h.snapshot(), remote: new Histogram().snapshot() },
  };
}

describe('formatMetrics', () => {
  test('labels are escaped, roles are a state set, histograms are cumulative', () => {
    const h = new Histogram();
    for (const s of [0.00001, 0.0003, 0.0003, 20]) h.observe(s);
    const res: ResourceStatus[] = [
      { name: 'a"b\\c\nd', role: 'primary', worker: worker(h) },
      { name: 'idle', role: 'init', worker: null },
    ];
    const text = formatMetrics(res, new Map([['idle', 2]]));
    const lbl = 'resource="a\\"b\\\\c\\nd"';
    assert.ok(text.includes(`hastd_resource_role{${lbl},role="primary"} 1\n`), text);
    assert.ok(text.includes(`hastd_resource_role{${lbl},role="init"} 0\n`));
    assert.ok(text.includes(`hastd_peer_connected{${lbl}} 0\n`));
    assert.ok(!text.includes('hastd_peer_connected{resource="idle"}'), 'no worker: absent');
    assert.ok(text.includes(`hastd_consistent{${lbl}} 0\n`));
    assert.ok(text.includes(`hastd_requests_total{${lbl},op="write"} 3\n`));
    assert.ok(text.includes(`hastd_request_errors_total{${lbl},op="write"} 1\n`));
    assert.ok(text.includes('hastd_worker_restarts_total{resource="idle"} 2\n'));
    const bucket = (le: string): string => `hastd_request_duration_seconds_bucket{${lbl},leg="local",le="${le}"}`;
    assert.ok(text.includes(`${bucket('0.00005')} 1\n`));
    assert.ok(text.includes(`${bucket('0.0005')} 3\n`));
    assert.ok(text.includes(`${bucket('10')} 3\n`));
    assert.ok(text.includes(`${bucket('+Inf')} 4\n`));
    assert.ok(text.includes(`hastd_request_duration_seconds_count{${lbl},leg="local"} 4\n`));
    assert.ok(text.includes('# TYPE hastd_request_duration_seconds histogram\n'));
    assert.ok(!text.includes('hastd_last_sync_transferred_bytes{'), 'no sync yet: absent');
    const synced = formatMetrics(
      [
        {
          name: 'r',
          role: 'primary',
          worker: { ...worker(h), lastSync: { bytes: 8192, transferred: 4096, skipped: 4096, seconds: 1 } },
        },
      ],
      new Map(),
    );
    assert.ok(synced.includes('hastd_last_sync_transferred_bytes{resource="r"} 4096\n'), synced);
    assert.ok(synced.includes('hastd_last_sync_skipped_bytes{resource="r"} 4096\n'), synced);
    for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE ') && l.endsWith(' counter')))
      assert.match(line, /_total counter$/, line);
  });
});

describe('formatEvent', () => {
  test('event, resource and fields; quoted values with spaces; optional time', () => {
    const ev = {
      time: '2026-01-01T00:00:00.000Z',
      resource: 'r0',
      event: 'disconnect' as const,
      reason: 'timeout',
      cause: 'no reply in 20 s',
    };
    assert.equal(formatEvent(ev, false), 'disconnect r0 reason:timeout cause:"no reply in 20 s"\n');
    assert.equal(
      formatEvent(ev, true),
      '2026-01-01T00:00:00.000Z disconnect r0 reason:timeout cause:"no reply in 20 s"\n',
    );
  });
});
