// hastio: the few Linux syscalls Node does not expose, for the local component
// (src/component/native.ts): flock, fallocate(PUNCH_HOLE), BLKDISCARD, BLKZEROOUT,
// BLKGETSIZE64, BLKSSZGET. Plain N-API C interface (node_api.h), no node-addon-api.
// Errors are thrown as Error objects whose `code` is the errno name (EWOULDBLOCK, EOPNOTSUPP, ...).
// The range operations can take long on big ranges, so they run on the libuv pool and return
// promises; the others are quick and synchronous. preadNoWait/pwriteNoWait are the data path's
// fast path: preadv2/pwritev2 with RWF_NOWAIT on the calling (event-loop) thread, which the kernel
// completes only if it needs no disk I/O (a page-cache hit), and refuses with EAGAIN otherwise; the
// caller then queues the request to the thread pool as usual. It saves two thread hand-offs per
// cached request, which on a small machine cost more than the copy itself. ioBatch does the
// requests that miss that path (or where the file system has none: tmpfs, ext4 writes) several
// to one thread-pool task.

#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

const char *ErrnoName(int err) {
  switch (err) {
    case EWOULDBLOCK: return "EWOULDBLOCK";  // == EAGAIN on Linux
    case EOPNOTSUPP: return "EOPNOTSUPP";    // == ENOTSUP on Linux
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EIO: return "EIO";
    case ENOTTY: return "ENOTTY";
    case EINTR: return "EINTR";
    case ENOLCK: return "ENOLCK";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EFBIG: return "EFBIG";
    case ENOSYS: return "ENOSYS";
    case EBUSY: return "EBUSY";
    default: return "EIO";
  }
}

napi_value MakeError(napi_env env, int err, const char *syscall) {
  char msg[160];
  snprintf(msg, sizeof(msg), "%s: %s", syscall, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, ErrnoName(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_value errnoValue;
  napi_create_int32(env, -err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_value sys;
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  return error;
}

napi_value ThrowErrno(napi_env env, int err, const char *syscall) {
  napi_throw(env, MakeError(env, err, syscall));
  return nullptr;
}

// Reads `n` numeric arguments (integers given as JS numbers, exact up to 2^53).
bool GetArgs(napi_env env, napi_callback_info info, size_t n, int64_t *out) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < n) {
    napi_throw_type_error(env, "EINVAL", "wrong number of arguments");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    double d;
    if (napi_get_value_double(env, argv[i], &d) != napi_ok || d < 0 || d > 9007199254740991.0 ||
        d != static_cast<double>(static_cast<int64_t>(d))) {
      napi_throw_type_error(env, "EINVAL", "arguments must be non-negative integers");
      return false;
    }
    out[i] = static_cast<int64_t>(d);
  }
  return true;
}

napi_value Flock(napi_env env, napi_callback_info info) {
  int64_t a[2];
  if (!GetArgs(env, info, 2, a)) return nullptr;
  int rc;
  do {
    rc = flock(static_cast<int>(a[0]), static_cast<int>(a[1]));
  } while (rc == -1 && errno == EINTR);
  if (rc == -1) return ThrowErrno(env, errno, "flock");
  return nullptr;
}

napi_value BlkGetSize64(napi_env env, napi_callback_info info) {
  int64_t a[1];
  if (!GetArgs(env, info, 1, a)) return nullptr;
  uint64_t size = 0;
  if (ioctl(static_cast<int>(a[0]), BLKGETSIZE64, &size) == -1) return ThrowErrno(env, errno, "ioctl(BLKGETSIZE64)");
  napi_value v;
  napi_create_double(env, static_cast<double>(size), &v);
  return v;
}

napi_value BlkSszGet(napi_env env, napi_callback_info info) {
  int64_t a[1];
  if (!GetArgs(env, info, 1, a)) return nullptr;
  int ssz = 0;
  if (ioctl(static_cast<int>(a[0]), BLKSSZGET, &ssz) == -1) return ThrowErrno(env, errno, "ioctl(BLKSSZGET)");
  napi_value v;
  napi_create_int32(env, ssz, &v);
  return v;
}

// preadNoWait(fd, buffer, position) / pwriteNoWait(fd, buffer, position): bytes transferred
// (possibly fewer than asked), -1 when the kernel would have to block or failed (the caller retries
// on the thread pool, where a real error is reported with its usual message), -2 when this kernel
// or file system does not support RWF_NOWAIT here (the caller stops trying on this descriptor).
napi_value NoWaitIo(napi_env env, napi_callback_info info, bool write) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 3) {
    napi_throw_type_error(env, "EINVAL", "wrong number of arguments");
    return nullptr;
  }
  double fd, pos;
  void *data = nullptr;
  size_t len = 0;
  if (napi_get_value_double(env, argv[0], &fd) != napi_ok || napi_get_value_double(env, argv[2], &pos) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || fd < 0 || pos < 0 || pos > 9007199254740991.0) {
    napi_throw_type_error(env, "EINVAL", "expected (fd, Buffer, position)");
    return nullptr;
  }
  double result;
#ifdef RWF_NOWAIT
  struct iovec iov = {data, len};
  ssize_t n;
  do {
    n = write ? pwritev2(static_cast<int>(fd), &iov, 1, static_cast<off_t>(pos), RWF_NOWAIT)
              : preadv2(static_cast<int>(fd), &iov, 1, static_cast<off_t>(pos), RWF_NOWAIT);
  } while (n == -1 && errno == EINTR);
  if (n >= 0) result = static_cast<double>(n);
  else if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) result = -2;
  else result = -1;
#else
  (void)write;
  result = -2;
#endif
  napi_value v;
  napi_create_double(env, result, &v);
  return v;
}

napi_value PreadNoWait(napi_env env, napi_callback_info info) { return NoWaitIo(env, info, false); }
napi_value PwriteNoWait(napi_env env, napi_callback_info info) { return NoWaitIo(env, info, true); }

// ioBatch(ops, buffers, done): small reads and writes gathered by src/component/batch.ts during
// one event-loop turn, done in order by ONE thread-pool task (one hand-off for all of them instead
// of one each). ops is a Float64Array of kBatchStride numbers per request: fd, position, kind
// (0 read, 1 write), result; buffers[i] is request i's data. Each request is one pread/pwrite
// (retried on EINTR); its result slot receives the bytes transferred (possibly fewer) or -errno.
// done() is called on the event-loop thread when every request has run. The arrays and the callback
// are referenced until then, so the buffers cannot be collected while a pool thread uses them.
constexpr size_t kBatchStride = 4;

struct BatchItem {
  int fd;
  off_t pos;
  bool write;
  void *data;
  size_t len;
};

struct BatchWork {
  napi_async_work work;
  napi_ref ops, buffers, done;
  double *slots;
  BatchItem *items;
  size_t n;
};

void BatchExecute(napi_env, void *data) {
  BatchWork *w = static_cast<BatchWork *>(data);
  for (size_t i = 0; i < w->n; i++) {
    const BatchItem &it = w->items[i];
    ssize_t r;
    do {
      r = it.write ? pwrite(it.fd, it.data, it.len, it.pos) : pread(it.fd, it.data, it.len, it.pos);
    } while (r == -1 && errno == EINTR);
    w->slots[i * kBatchStride + 3] = r >= 0 ? static_cast<double>(r) : -static_cast<double>(errno);
  }
}

void BatchComplete(napi_env env, napi_status, void *data) {
  BatchWork *w = static_cast<BatchWork *>(data);
  napi_value done, global;
  napi_get_reference_value(env, w->done, &done);
  napi_get_global(env, &global);
  napi_delete_reference(env, w->ops);
  napi_delete_reference(env, w->buffers);
  napi_delete_reference(env, w->done);
  napi_delete_async_work(env, w->work);
  delete[] w->items;
  delete w;
  // An exception thrown by done() is reported by Node as uncaught, like any callback's.
  napi_call_function(env, global, done, 0, nullptr, nullptr);
}

napi_value IoBatch(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 3) {
    napi_throw_type_error(env, "EINVAL", "expected (Float64Array, Buffer[], function)");
    return nullptr;
  }
  napi_typedarray_type type;
  size_t nslots = 0;
  void *slots = nullptr;
  bool isArray = false;
  uint32_t nbufs = 0;
  napi_valuetype fnType;
  if (napi_get_typedarray_info(env, argv[0], &type, &nslots, &slots, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || nslots % kBatchStride != 0 || napi_is_array(env, argv[1], &isArray) != napi_ok ||
      !isArray || napi_get_array_length(env, argv[1], &nbufs) != napi_ok || nbufs != nslots / kBatchStride ||
      napi_typeof(env, argv[2], &fnType) != napi_ok || fnType != napi_function) {
    napi_throw_type_error(env, "EINVAL", "expected (Float64Array, Buffer[], function) with one buffer per request");
    return nullptr;
  }
  double *d = static_cast<double *>(slots);
  BatchItem *items = new BatchItem[nbufs > 0 ? nbufs : 1];
  for (uint32_t i = 0; i < nbufs; i++) {
    napi_value b;
    void *p = nullptr;
    size_t len = 0;
    const double fd = d[i * kBatchStride], pos = d[i * kBatchStride + 1];
    if (napi_get_element(env, argv[1], i, &b) != napi_ok || napi_get_buffer_info(env, b, &p, &len) != napi_ok ||
        fd < 0 || fd > 2147483647.0 || pos < 0 || pos > 9007199254740991.0) {
      delete[] items;
      napi_throw_type_error(env, "EINVAL", "each request needs a Buffer, an fd and a non-negative position");
      return nullptr;
    }
    items[i] = {static_cast<int>(fd), static_cast<off_t>(pos), d[i * kBatchStride + 2] != 0, p, len};
  }
  BatchWork *w = new BatchWork();
  w->slots = d;
  w->items = items;
  w->n = nbufs;
  napi_create_reference(env, argv[0], 1, &w->ops);
  napi_create_reference(env, argv[1], 1, &w->buffers);
  napi_create_reference(env, argv[2], 1, &w->done);
  napi_value name;
  napi_create_string_utf8(env, "hastio.batch", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, nullptr, name, BatchExecute, BatchComplete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return nullptr;
}

// Range operations, run on the thread pool.
enum RangeOp { kPunchHole, kBlkDiscard, kBlkZeroOut };

struct RangeWork {
  napi_async_work work;
  napi_deferred deferred;
  RangeOp op;
  int fd;
  uint64_t off;
  uint64_t len;
  int err;
};

const char *OpName(RangeOp op) {
  switch (op) {
    case kPunchHole: return "fallocate(PUNCH_HOLE)";
    case kBlkDiscard: return "ioctl(BLKDISCARD)";
    default: return "ioctl(BLKZEROOUT)";
  }
}

void RangeExecute(napi_env, void *data) {
  RangeWork *w = static_cast<RangeWork *>(data);
  int rc;
  if (w->op == kPunchHole) {
    do {
      rc = fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(w->off),
                     static_cast<off_t>(w->len));
    } while (rc == -1 && errno == EINTR);
  } else {
    uint64_t range[2] = {w->off, w->len};
    rc = ioctl(w->fd, w->op == kBlkDiscard ? BLKDISCARD : BLKZEROOUT, range);
  }
  w->err = rc == -1 ? errno : 0;
}

void RangeComplete(napi_env env, napi_status, void *data) {
  RangeWork *w = static_cast<RangeWork *>(data);
  if (w->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, w->deferred, undef);
  } else {
    napi_reject_deferred(env, w->deferred, MakeError(env, w->err, OpName(w->op)));
  }
  napi_delete_async_work(env, w->work);
  delete w;
}

napi_value StartRange(napi_env env, napi_callback_info info, RangeOp op) {
  int64_t a[3];
  if (!GetArgs(env, info, 3, a)) return nullptr;
  RangeWork *w = new RangeWork();
  w->op = op;
  w->fd = static_cast<int>(a[0]);
  w->off = static_cast<uint64_t>(a[1]);
  w->len = static_cast<uint64_t>(a[2]);
  w->err = 0;
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "hastio", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, nullptr, name, RangeExecute, RangeComplete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return promise;
}

napi_value PunchHole(napi_env env, napi_callback_info info) { return StartRange(env, info, kPunchHole); }
napi_value BlkDiscard(napi_env env, napi_callback_info info) { return StartRange(env, info, kBlkDiscard); }
napi_value BlkZeroOut(napi_env env, napi_callback_info info) { return StartRange(env, info, kBlkZeroOut); }

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"flock", nullptr, Flock, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"punchHole", nullptr, PunchHole, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"blkDiscard", nullptr, BlkDiscard, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"blkZeroOut", nullptr, BlkZeroOut, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"blkGetSize64", nullptr, BlkGetSize64, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"blkSszGet", nullptr, BlkSszGet, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"preadNoWait", nullptr, PreadNoWait, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"pwriteNoWait", nullptr, PwriteNoWait, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"ioBatch", nullptr, IoBatch, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
