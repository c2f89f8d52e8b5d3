// One 4 KiB pwrite round trip through a thread hand-off (as the libuv pool does it: mutex, condition
// variable, eventfd polled by epoll) against io_uring (raw syscalls, completion signalled by an
// eventfd registered with the ring, polled by epoll, as a libuv-polled ring would be), and inline
// on the calling thread. Issue 14, step 3 (README "Benchmarks"): on tmpfs and ext4 files io_uring
// hands buffered writes to a kernel worker (after a failed inline try, unless IOSQE_ASYNC), so it
// is no faster than the pool there by default and about twice as fast with IOSQE_ASYNC.
//   cc -O2 -o /tmp/handoff bench/handoff-latency.c -lpthread && /tmp/handoff /dev/shm/x [async]
// (`async` sets IOSQE_ASYNC). The file is made 256 MiB and filled first; remove it afterwards.
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

enum { N = 20000, SPAN = 65536 };
static int fd, efd;
static char buf[4096];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int job;
static off_t jpos;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (!job) pthread_cond_wait(&cv, &mu);
    job = 0;
    off_t p = jpos;
    pthread_mutex_unlock(&mu);
    if (pwrite(fd, buf, sizeof buf, p) != sizeof buf) abort();
    uint64_t one = 1;
    if (write(efd, &one, 8) != 8) abort();
  }
  return NULL;
}

static void waitfd(int ep, int evfd) {
  struct epoll_event e;
  uint64_t x;
  epoll_wait(ep, &e, 1, -1);
  // May find the counter already drained (EAGAIN): the caller checks its completion again.
  ssize_t n = read(evfd, &x, 8);
  (void)n;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  fd = open(argv[1], O_RDWR | O_CREAT, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)SPAN * 4096) != 0) return 1;
  for (off_t o = 0; o < (off_t)SPAN * 4096; o += 4096) pwrite(fd, buf, sizeof buf, o);
  double t0 = now();
  for (int i = 0; i < N; i++) pwrite(fd, buf, sizeof buf, (random() % SPAN) * 4096);
  printf("inline  %.1f us\n", (now() - t0) / N);

  efd = eventfd(0, EFD_NONBLOCK);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = efd};
  epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
  pthread_t th;
  pthread_create(&th, NULL, worker, NULL);
  t0 = now();
  for (int i = 0; i < N; i++) {
    pthread_mutex_lock(&mu);
    job = 1;
    jpos = (random() % SPAN) * 4096;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    waitfd(ep, efd);
  }
  printf("pool    %.1f us\n", (now() - t0) / N);
  epoll_ctl(ep, EPOLL_CTL_DEL, efd, NULL);

  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  int ring = (int)syscall(__NR_io_uring_setup, 64, &p);
  if (ring < 0) {
    perror("io_uring_setup");
    return 1;
  }
  size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single && cqsz > sqsz) sqsz = cqsz;
  char *sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
  char *cq = single ? sq : mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
  struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
  unsigned *stail = (unsigned *)(sq + p.sq_off.tail), *smask = (unsigned *)(sq + p.sq_off.ring_mask);
  unsigned *sarr = (unsigned *)(sq + p.sq_off.array);
  unsigned *chead = (unsigned *)(cq + p.cq_off.head), *ctail = (unsigned *)(cq + p.cq_off.tail);
  unsigned *cmask = (unsigned *)(cq + p.cq_off.ring_mask);
  struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  int refd = eventfd(0, EFD_NONBLOCK);
  syscall(__NR_io_uring_register, ring, IORING_REGISTER_EVENTFD, &refd, 1);
  struct epoll_event rev = {.events = EPOLLIN, .data.fd = refd};
  epoll_ctl(ep, EPOLL_CTL_ADD, refd, &rev);
  int async = argc > 2, done_at_return = 0;
  t0 = now();
  for (int i = 0; i < N; i++) {
    unsigned t = *stail, slot = t & *smask;
    struct io_uring_sqe *s = &sqes[slot];
    memset(s, 0, sizeof *s);
    s->opcode = IORING_OP_WRITE;
    s->fd = fd;
    s->addr = (uint64_t)(uintptr_t)buf;
    s->len = sizeof buf;
    s->off = (random() % SPAN) * 4096;
    if (async) s->flags = IOSQE_ASYNC;
    sarr[slot] = slot;
    __atomic_store_n(stail, t + 1, __ATOMIC_RELEASE);
    syscall(__NR_io_uring_enter, ring, 1, 0, 0, NULL, 0);
    if (__atomic_load_n(ctail, __ATOMIC_ACQUIRE) != *chead) done_at_return++;
    while (__atomic_load_n(ctail, __ATOMIC_ACQUIRE) == *chead) waitfd(ep, refd);
    unsigned h = *chead;
    if (cqes[h & *cmask].res != (int)sizeof buf) fprintf(stderr, "write result %d\n", cqes[h & *cmask].res);
    __atomic_store_n(chead, h + 1, __ATOMIC_RELEASE);
  }
  printf("uring   %.1f us (%d of %d complete when io_uring_enter returned)\n", (now() - t0) / N, done_at_return, N);
  return 0;
}
