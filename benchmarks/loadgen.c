/* loadgen: a small epoll TCP echo load generator for 127.0.0.1, so that the client is never the bottleneck.
 *   loadgen pingpong PORT CONNS SIZE SECONDS [proxy] [msgs=N]
 *                                              each connection sends SIZE bytes, waits for them all back, repeats;
 *                                              every byte echoed is checked against what was sent (memcmp);
 *                                              with "proxy", each connection first sends a PROXY protocol v1 header;
 *                                              with "msgs=N", it stops at the Nth answered message, or after
 *                                              SECONDS if that comes first (a run of a known size, for counting
 *                                              instructions per message: benchmarks/instructions.py)
 *   loadgen stream   PORT SECONDS              one connection writes a pattern while reading and verifying the echo,
 *                                              then half-closes and waits for the tail
 * Prints one JSON line; exits 1 when a byte was wrong or missing. Build: cc -O2 -o loadgen loadgen.c
 * (Copied from the shared bench harness; the ping-pong check is tcpproto's addition.) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }

static int dial(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(2); }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

typedef struct { int fd; size_t got, off; double t0; } conn_t;

enum { PAT = 1 << 16 };
static unsigned char pat[2 * PAT]; /* pat[j] depends on j % PAT only, so any window of up to PAT bytes is contiguous */

static int pingpong(int port, int n, int size, double secs, int proxy, long limit) {
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
  int ep = epoll_create1(0);
  conn_t *c = calloc(n, sizeof *c);
  char *buf = malloc(1 << 16);
  if (size < 1 || size > PAT) { fprintf(stderr, "size must be 1..%d\n", PAT); exit(2); }
  for (int j = 0; j < 2 * PAT; j++) pat[j] = (unsigned char)((j % PAT) * 131 >> 3) ^ (unsigned char)(j % PAT >> 9);
  size_t cap = 1 << 20, nlat = 0; double *lat = malloc(cap * sizeof *lat);
  long msgs = 0, errors = 0, bad = 0;
  for (int i = 0; i < n; i++) {
    c[i].fd = dial(port);
    if (proxy) {
      char hdr[80];
      int len = snprintf(hdr, sizeof hdr, "PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", 10000 + i % 50000, port);
      if (write(c[i].fd, hdr, len) != len) errors++;
    }
    c[i].off = (size_t)i * 4099 % PAT;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
  }
  double start = now(), end = start + secs;
  for (int i = 0; i < n; i++) { c[i].t0 = now(); if (write(c[i].fd, pat + c[i].off, size) != size) errors++; }
  struct epoll_event evs[256];
  while (now() < end && msgs != limit) {
    int k = epoll_wait(ep, evs, 256, 100);
    for (int j = 0; j < k && msgs != limit; j++) {
      conn_t *x = &c[evs[j].data.u32];
      ssize_t r = read(x->fd, buf, 1 << 16);
      if (r <= 0) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL); continue; }
      if (x->got + r > (size_t)size) { bad += x->got + r - size; r = size - x->got; } /* more than was sent */
      if (memcmp(buf, pat + x->off + x->got, r)) bad++;
      x->got += r;
      if (x->got >= (size_t)size) {
        double t = now();
        if (nlat < cap) lat[nlat++] = (t - x->t0) * 1e6;
        msgs++; x->got = 0; x->t0 = t; x->off = (x->off + size) % PAT;
        if (write(x->fd, pat + x->off, size) != size) errors++;
      }
    }
  }
  double el = now() - start;
  qsort(lat, nlat, sizeof *lat, cmp);
  printf("{\"mode\":\"pingpong\",\"conns\":%d,\"size\":%d,\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"msgs\":%ld,\"errors\":%ld,\"mismatched\":%ld}\n",
         n, size, msgs / el, msgs * (double)size / el / 1e6, nlat ? lat[nlat / 2] : 0, nlat ? lat[nlat * 99 / 100] : 0, msgs, errors, bad);
  return errors != 0 || bad != 0 || msgs == 0;
}

static int stream(int port, double secs) {
  int fd = dial(port), ep = epoll_create1(0);
  enum { B = 1 << 16 };
  static unsigned char out[B], in[B];
  unsigned long long sent = 0, recvd = 0, bad = 0;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT}, evs[4];
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  double start = now(), end = start + secs;
  int closing = 0;
  while (1) {
    double t = now();
    if (!closing && t >= end) { closing = 1; shutdown(fd, SHUT_WR); ev.events = EPOLLIN; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev); }
    if (closing && (recvd >= sent || t > end + 5)) break;
    int k = epoll_wait(ep, evs, 4, 100);
    for (int j = 0; j < k; j++) {
      if (!closing && (evs[j].events & EPOLLOUT)) {
        for (int i = 0; i < B; i++) out[i] = (unsigned char)((sent + i) * 131 >> 3);
        ssize_t w = write(fd, out, B);
        if (w > 0) sent += w;
      }
      if (evs[j].events & (EPOLLIN | EPOLLHUP)) {
        ssize_t r = read(fd, in, B);
        if (r <= 0) { closing = 2; break; }
        for (ssize_t i = 0; i < r; i++) if (in[i] != (unsigned char)((recvd + i) * 131 >> 3)) bad++;
        recvd += r;
      }
    }
    if (closing == 2) break;
  }
  double el = now() - start;
  printf("{\"mode\":\"stream\",\"mb_per_s\":%.1f,\"sent\":%llu,\"received\":%llu,\"mismatched\":%llu}\n", recvd / el / 1e6, sent, recvd, bad);
  return bad != 0 || recvd != sent;
}

int main(int argc, char **argv) {
  if (argc >= 6 && !strcmp(argv[1], "pingpong")) {
    int proxy = 0, ok = 1;
    long cap = -1; /* no cap: msgs never equals -1 */
    for (int i = 6; i < argc; i++) {
      if (!strcmp(argv[i], "proxy")) proxy = 1;
      else if (!strncmp(argv[i], "msgs=", 5) && (cap = atol(argv[i] + 5)) > 0) continue;
      else ok = 0;
    }
    if (ok) return pingpong(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]), proxy, cap);
  }
  if (argc >= 4 && !strcmp(argv[1], "stream")) return stream(atoi(argv[2]), atof(argv[3]));
  fprintf(stderr, "usage: loadgen pingpong PORT CONNS SIZE SECONDS [proxy] [msgs=N] | loadgen stream PORT SECONDS\n");
  return 2;
}
