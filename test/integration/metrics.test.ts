// The `metrics` listen address: hastd serves the Prometheus text format, which `promtool check
// metrics` accepts, with the role, connection, consistency, dirty bytes and request counters of a
// replicating pair. Two real hastd on loopback.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync } from 'node:fs';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { freePort, hastctl, makePair, startHastd, statusJson } from '../harness/cluster.js';
import { run } from '../harness/process.js';
import { requires } from '../harness/tools.js';
import { waitFor, waitInSync } from '../harness/wait.js';

async function scrape(url: string): Promise<{ status: number; type: string | null; text: string }> {
  const r = await fetch(url);
  return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('metrics: promtool accepts the exposition; role, connection and counters are right', {
  timeout: 120_000,
}, async (t) => {
  if (!requires(t, { tools: ['promtool'] })) return;
  const pair = await makePair(t, { size: 8 << 20 });
  const port = await freePort('127.0.0.1');
  appendFileSync(pair.conf, `on ${pair.a.name} {\n  metrics tcp4://127.0.0.1:${port}\n}\n`);
  const a = await startHastd(t, pair.conf, pair.a);
  await startHastd(t, pair.conf, pair.b);
  const url = `http://127.0.0.1:${port}/metrics`;
  assert.match(a.output(), new RegExp(`Serving metrics on http://127\\.0\\.0\\.1:${port}/metrics\\.`));

  const idle = await scrape(url);
  assert.equal(idle.status, 200);
  assert.equal(idle.type, 'text/plain; version=0.0.4; charset=utf-8');
  assert.equal(sample(idle.text, 'hastd_resource_role{resource="r0",role="init"}'), 1);
  assert.equal((await scrape(`http://127.0.0.1:${port}/other`)).status, 404);

  assert.equal((await hastctl(pair.conf, pair.b.name, ['role', 'secondary', 'r0'])).code, 0);
  assert.equal((await hastctl(pair.conf, pair.a.name, ['role', 'primary', 'r0'])).code, 0);
  await waitFor('export', () => existsSync(pair.sock(pair.a)));
  const client = await NbdClient.connect({ path: pair.sock(pair.a) });
  for (let i = 0; i < 5; i++) await client.write(i * 65536, randomBytes(65536));
  await client.read(0, 4096);
  await client.flush();
  await client.disconnect();
  await waitInSync('pair', async () => (await statusJson(pair.conf, pair.a.name, 'r0')).worker as never);

  const m = await scrape(url);
  const check = await run('promtool', ['check', 'metrics'], { input: m.text });
  assert.equal(check.code, 0, `${check.stdout}${check.stderr}\n${m.text}`);
  // promtool's lint is quiet about names, units, _total and HELP: nothing to say.
  assert.equal(`${check.stdout}${check.stderr}`.trim(), '');
  assert.equal(sample(m.text, 'hastd_resource_role{resource="r0",role="primary"}'), 1);
  assert.equal(sample(m.text, 'hastd_resource_role{resource="r0",role="init"}'), 0);
  assert.equal(sample(m.text, 'hastd_peer_connected{resource="r0"}'), 1);
  assert.equal(sample(m.text, 'hastd_consistent{resource="r0"}'), 1);
  assert.equal(sample(m.text, 'hastd_dirty_bytes{resource="r0"}'), 0);
  assert.equal(sample(m.text, 'hastd_sync_left_bytes{resource="r0"}'), 0);
  assert.equal(sample(m.text, 'hastd_requests_total{resource="r0",op="write"}'), 5);
  assert.ok((sample(m.text, 'hastd_requests_total{resource="r0",op="read"}') ?? 0) >= 1);
  assert.equal(sample(m.text, 'hastd_request_errors_total{resource="r0",op="write"}'), 0);
  assert.ok((sample(m.text, 'hastd_activemap_updates_total{resource="r0"}') ?? 0) >= 1);
  assert.equal(sample(m.text, 'hastd_worker_restarts_total{resource="r0"}'), 0);
  // Latency histograms of both legs: 5 writes went to each, plus the read to the local one.
  assert.equal(sample(m.text, 'hastd_request_duration_seconds_count{resource="r0",leg="remote"}'), 5);
  assert.equal(sample(m.text, 'hastd_request_duration_seconds_bucket{resource="r0",leg="remote",le="+Inf"}'), 5);
  assert.ok((sample(m.text, 'hastd_request_duration_seconds_count{resource="r0",leg="local"}') ?? 0) >= 6);
  assert.ok((sample(m.text, 'hastd_request_duration_seconds_sum{resource="r0",leg="local"}') ?? 0) > 0);
  assert.match(m.text, /^hastd_build_info\{version="[^"]+"\} 1$/m);
});
