// The environment a worker process is started with: thread-pool size and glibc malloc thresholds
// (1 MiB I/O buffers from the heap, not a fresh mmap each), each overridable by the administrator.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { workerEnv } from '../../../src/daemon/parent.js';

test('workerEnv sets the thread pool and the malloc thresholds and keeps everything else', () => {
  const env = workerEnv({ PATH: '/usr/bin', HOME: '/root' });
  assert.equal(env.PATH, '/usr/bin');
  assert.equal(env.HOME, '/root');
  assert.equal(env.UV_THREADPOOL_SIZE, '16');
  // Above MAXPHYS (1 MiB), so every request buffer is served from the heap.
  assert.ok(Number(env.MALLOC_MMAP_THRESHOLD_) > 1 << 20, `mmap threshold ${env.MALLOC_MMAP_THRESHOLD_}`);
  assert.ok(
    Number(env.MALLOC_TRIM_THRESHOLD_) >= Number(env.MALLOC_MMAP_THRESHOLD_),
    `trim threshold ${env.MALLOC_TRIM_THRESHOLD_}`,
  );
});

test('workerEnv leaves values the administrator set alone', () => {
  const env = workerEnv({ UV_THREADPOOL_SIZE: '4', MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_TRIM_THRESHOLD_: '0' });
  assert.equal(env.UV_THREADPOOL_SIZE, '4');
  assert.equal(env.MALLOC_MMAP_THRESHOLD_, '131072');
  assert.equal(env.MALLOC_TRIM_THRESHOLD_, '0');
});

test('workerEnv does not change the environment it is given', () => {
  const given: NodeJS.ProcessEnv = { PATH: '/bin' };
  workerEnv(given);
  assert.deepEqual(given, { PATH: '/bin' });
});
