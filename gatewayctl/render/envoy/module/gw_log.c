/* The compiled JSON access logger (logger_name `json`): the line Envoy's json_format file
 * logger writes for render/envoy/access_log.py's LOG_FORMAT, written by the module instead.
 *
 * Each field is read through the access-logger callbacks of Envoy 1.40's ABI (gw_abi.h) and
 * written as Envoy 1.40 writes it: keys sorted, null for an absent value, numbers as Envoy's
 * shortest round-trip form (std::to_chars: 1e-04, 1200, 1e+05), %START_TIME% as
 * 2026-12-06T10:37:14.118Z, strings escaped as Envoy's JSON sanitizer does (valid UTF-8:
 * \" \\ \b \f \n \r \t and \u00XX for the other control characters, everything else as is;
 * a string that is not valid UTF-8: every byte below 0x20, ", \, 0x7f and every byte from
 * 0x80 as \u00XX). The `gateway` object holds the keys of the `gw` namespace the renderer
 * lists with their types (access_log.py's GATEWAY_KEYS), sorted, only those set; null when
 * none is.
 *
 * `model` (%UPSTREAM_METADATA(gw:model)%, the answering endpoint's model): this ABI hands an
 * access logger no host metadata, so it is the response's x-gateway-model header (which the
 * route sets from the same endpoint metadata, or as the literal of a route whose attempts all
 * go to one model) when an upstream host was chosen, else null (local replies, cache hits).
 * `flags`: the core response flags' short names joined with commas, in the flags' order
 * (Envoy joins them in the order they were set: the same for one flag, the usual case, and
 * possibly another order for two or more).
 *
 * Writing never blocks a worker: a line is built in the worker's own buffer, then appended
 * under a mutex to the file's buffer; one flusher thread per file writes it out every
 * flush_ms (Envoy's --file-flush-interval-msec, which the renderer passes in) or as soon as
 * 64 KiB are waiting (Envoy's file flush size), on the flush hook, when the last config using
 * the file goes, and at process exit. Every logger config with the same path shares one file
 * (one descriptor, one buffer, writes in order, lines never torn). A failed write is reported
 * once on stderr (until a write succeeds again) and its bytes dropped; a buffer grown past
 * 16 MiB (the file not taking writes) drops lines, also reported once.
 *
 * Rotation: Envoy 1.40's ABI gives an access logger no hook for /reopen_logs (SIGUSR1), so the
 * file follows its path by itself, as Python's WatchedFileHandler does: before each write the
 * writer compares the path's (st_dev, st_ino) with the open descriptor's, and when the file
 * was renamed or removed it opens the path anew (creating it) and writes there. Lines a write
 * took before the switch are in the old file, every later one in the new: each line once,
 * whole, and nothing more to the rotated file. A path that cannot be opened anew (its
 * directory not writable) is reported once, the lines go on to the old file, and the path is
 * tried again at the next write. One stat per write, on the writer's side: the workers never
 * wait for it. */
#define _POSIX_C_SOURCE 200809L /* strdup, gmtime_r, clock_gettime, O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gw_module.h"

#define FLUSH_BYTES (64u * 1024u)
#define MAX_PENDING (16u * 1024u * 1024u)

/* ---- byte buffers: gw_out (gw_value.h), grown by gw_out_reserve ---- */

/* Room for n more bytes. The logger's buffers have no limit, and a line whose buffer failed is
 * dropped whole (as are the bytes of a failed append to the file's buffer), so the check made
 * inline is the capacity's alone; gw_out_reserve makes the others. */
static inline bool room(gw_out *b, size_t n) {
  return n <= b->capacity - b->length || gw_out_reserve(b, n);
}

static inline void put(gw_out *b, const char *s, size_t n) {
  if (room(b, n)) {
    memcpy(b->ptr + b->length, s, n);
    b->length += n;
  }
}

#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)

static void put_u64(gw_out *b, unsigned long long v) {
  char tmp[24];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  put(b, tmp + i, sizeof tmp - i);
}

/* ---- JSON strings, as Envoy 1.40's sanitizer writes them ---- */

static bool utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t more;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) more = 1;
    else if (c == 0xe0) more = 2, lo = 0xa0;
    else if (c == 0xed) more = 2, hi = 0x9f;
    else if (c >= 0xe1 && c <= 0xef) more = 2;
    else if (c == 0xf0) more = 3, lo = 0x90;
    else if (c == 0xf4) more = 3, hi = 0x8f;
    else if (c >= 0xf1 && c <= 0xf3) more = 3;
    else return false;
    if (n - i <= more) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= more; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xbf) return false;
    i += more + 1;
  }
  return true;
}

static void put_uescape(gw_out *b, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
  put(b, e, 6);
}

/* Byte classes: 0 written as is, 1 escaped (control, ", \\), 2 not ASCII. */
static const unsigned char CLASS[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};

static void put_string(gw_out *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n && CLASS[s[i]] == 0) i++;
  if (i == n) { /* the common case: nothing to escape, one copy */
    if (room(b, n + 2)) {
      char *o = b->ptr + b->length;
      o[0] = '"';
      memcpy(o + 1, str, n);
      o[n + 1] = '"';
      b->length += n + 2;
    }
    return;
  }
  bool ascii = true;
  for (size_t k = i; k < n; k++)
    if (CLASS[s[k]] == 2) ascii = false;
  PUTS(b, "\"");
  if (ascii || utf8_valid(s, n)) {
    size_t run = 0; /* start of the bytes not yet written */
    for (; i < n; i++) {
      unsigned char c = s[i];
      if (CLASS[c] != 1) continue;
      put(b, str + run, i - run);
      run = i + 1;
      switch (c) {
        case '"': PUTS(b, "\\\""); break;
        case '\\': PUTS(b, "\\\\"); break;
        case '\b': PUTS(b, "\\b"); break;
        case '\f': PUTS(b, "\\f"); break;
        case '\n': PUTS(b, "\\n"); break;
        case '\r': PUTS(b, "\\r"); break;
        case '\t': PUTS(b, "\\t"); break;
        default: put_uescape(b, c);
      }
    }
    put(b, str + run, n - run);
  } else {
    for (size_t k = 0; k < n; k++) {
      unsigned char c = s[k];
      if (CLASS[c] != 0 || c == 0x7f) put_uescape(b, c);
      else put(b, str + k, 1);
    }
  }
  PUTS(b, "\"");
}

/* ---- JSON numbers: the shortest form that reads back (std::to_chars' plain format) ---- */

/* `digits` (no leading or trailing zeros unless "0") times 10^(exp - ndigits + 1): the
 * fixed form or the scientific one, whichever is shorter (fixed on a tie). */
static void put_decimal(gw_out *b, bool negative, const char *digits, int ndigits, int exp) {
  char out[64];
  size_t o = 0;
  /* scientific: d[.ddd]e±XX */
  int exp_digits = (exp >= 100 || exp <= -100) ? 3 : 2;
  size_t sci = (size_t)ndigits + (ndigits > 1 ? 1 : 0) + 2 + (size_t)exp_digits;
  size_t fixed;
  if (exp >= ndigits - 1) fixed = (size_t)exp + 1; /* integer, zeros appended */
  else if (exp >= 0) fixed = (size_t)ndigits + 1; /* point inside */
  else fixed = (size_t)(1 + 1 + (-exp - 1) + ndigits); /* 0.000ddd */
  if (negative) out[o++] = '-';
  if (fixed <= sci) {
    if (exp >= ndigits - 1) {
      memcpy(out + o, digits, (size_t)ndigits);
      o += (size_t)ndigits;
      for (int i = ndigits - 1; i < exp; i++) out[o++] = '0';
    } else if (exp >= 0) {
      memcpy(out + o, digits, (size_t)exp + 1);
      o += (size_t)exp + 1;
      out[o++] = '.';
      memcpy(out + o, digits + exp + 1, (size_t)(ndigits - exp - 1));
      o += (size_t)(ndigits - exp - 1);
    } else {
      out[o++] = '0';
      out[o++] = '.';
      for (int i = -1; i > exp; i--) out[o++] = '0';
      memcpy(out + o, digits, (size_t)ndigits);
      o += (size_t)ndigits;
    }
  } else {
    out[o++] = digits[0];
    if (ndigits > 1) {
      out[o++] = '.';
      memcpy(out + o, digits + 1, (size_t)ndigits - 1);
      o += (size_t)ndigits - 1;
    }
    out[o++] = 'e';
    out[o++] = exp < 0 ? '-' : '+';
    int e = exp < 0 ? -exp : exp;
    if (exp_digits == 3) out[o++] = (char)('0' + e / 100);
    out[o++] = (char)('0' + e / 10 % 10);
    out[o++] = (char)('0' + e % 10);
  }
  put(b, out, o);
}

/* The decimal m * 10^-k with the smallest k (up to 17) that reads back as `a` exactly, as
 * digits and exponent; false if there is none with m below 2^53 (then the general way). A
 * division of two exactly represented numbers is correctly rounded, as strtod is, so
 * m / 10^k == a says the decimal reads back as a; the smallest such k gives the fewest
 * significant digits. When m - 1 or m + 1 reads back as a too (16-17 digits), the shortest
 * form is the one nearest a's exact value, which the general way finds. */
static bool short_decimal(double a, char *digits, int *nd, int *exp) {
  static const double TEN[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
                               1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
  for (int k = 0; k <= 17; k++) {
    double scaled = a * TEN[k];
    if (scaled >= 9007199254740992.0) return false;
    unsigned long long m = (unsigned long long)(scaled + 0.5);
    if (m == 0 || (double)m / TEN[k] != a) continue;
    /* a neighbour that reads back as a too: which is nearest needs exact arithmetic */
    if ((double)(m - 1) / TEN[k] == a || (double)(m + 1) / TEN[k] == a) return false;
    char tmp[24];
    int n = 0;
    while (m != 0) {
      tmp[n++] = (char)('0' + m % 10);
      m /= 10;
    }
    int zeros = 0;
    while (tmp[zeros] == '0') zeros++;
    *nd = n - zeros;
    for (int i = 0; i < *nd; i++) digits[i] = tmp[n - 1 - i];
    *exp = n - 1 - k;
    return true;
  }
  return false;
}

static void put_number(gw_out *b, double v) {
  if (isnan(v)) {
    PUTS(b, "null");
    return;
  }
  if (isinf(v)) {
    if (v < 0) PUTS(b, "-inf");
    else PUTS(b, "inf");
    return;
  }
  bool negative = signbit(v);
  double a = fabs(v);
  char digits[24];
  int nd, exp;
  if (a == 0) {
    put(b, negative ? "-0" : "0", negative ? 2 : 1);
    return;
  }
  if (a < 9007199254740992.0 && a == (double)(unsigned long long)a) {
    /* a whole number below 2^53: its decimal digits, exactly */
    unsigned long long u = (unsigned long long)a; /* >= 1: a is not 0 */
    char tmp[24];
    int n = 0;
    do {
      tmp[n++] = (char)('0' + u % 10);
      u /= 10;
    } while (u != 0);
    exp = n - 1;
    int zeros = 0;
    while (tmp[zeros] == '0') zeros++;
    nd = n - zeros;
    for (int i = 0; i < nd; i++) digits[i] = tmp[n - 1 - i];
  } else if (a >= 1e-9 && a < 1e15 && short_decimal(a, digits, &nd, &exp)) {
    /* a few decimals (a cost, a price): found without formatting */
  } else {
    /* the fewest significant digits that read back as the same double */
    char sci[40];
    int p;
    for (p = 1; p <= 17; p++) {
      snprintf(sci, sizeof sci, "%.*e", p - 1, a);
      if (strtod(sci, NULL) == a) break;
    }
    nd = 0;
    const char *c = sci;
    for (; *c != 'e'; c++)
      if (*c != '.') digits[nd++] = *c;
    exp = atoi(c + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
  }
  put_decimal(b, negative, digits, nd, exp);
}

/* ---- the file: one per path, shared by every logger config that writes to it ---- */

typedef struct gl_file {
  char *path;
  int fd;                /* write_mu (and the thread that opens or closes the file) */
  bool watched;          /* a path a rotation can move: not /dev/stdout, /dev/stderr */
  dev_t dev;             /* fd's file; write_mu */
  ino_t ino;
  int refs;              /* configs using it; files_mu */
  long flush_ms;
  pthread_mutex_t mu;    /* pending, spare, stop, dropped */
  pthread_mutex_t write_mu; /* held from taking the pending bytes to their write: in order */
  pthread_cond_t wake;
  gw_out pending, spare;
  bool stop;
  bool dropping;         /* lines dropped since the last report */
  bool write_failing;    /* a write failed and was reported; reset by a good write */
  bool reopen_failing;   /* reopening after a rotation failed and was reported; write_mu */
  pthread_t thread;
  struct gl_file *next;
} gl_file;

static pthread_mutex_t files_mu = PTHREAD_MUTEX_INITIALIZER;
static gl_file *files;

static void report(const gl_file *f, const char *what, int err) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "gatewayctl access log %s: %s%s%s\n", f->path, what,
                   err ? ": " : "", err ? strerror(err) : "");
  if (n > 0) {
    ssize_t ignored = write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg);
    (void)ignored;
  }
}

/* Writes everything or reports once and drops the rest. Caller holds write_mu. */
static void write_out(gl_file *f, const char *p, size_t n) {
  while (n > 0) {
    ssize_t done = write(f->fd, p, n);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) {
      if (!f->write_failing) report(f, "write failed, lines dropped", done < 0 ? errno : EIO);
      f->write_failing = true;
      return;
    }
    p += done;
    n -= (size_t)done;
  }
  f->write_failing = false;
}

/* Opens the path, and notes which file the descriptor is (for follow_rotation). */
static int open_file(gl_file *f) {
  if (strcmp(f->path, "/dev/stdout") == 0) return fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
  if (strcmp(f->path, "/dev/stderr") == 0) return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
  int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  struct stat st;
  if (fd < 0) return fd;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  return fd;
}

/* If the path no longer names the open file (renamed or removed: a rotation), writes go to
 * the path's file from now on: opened anew, created if need be. If that fails, reported once
 * (until a reopen succeeds) and the old file kept. Caller holds write_mu. */
static void follow_rotation(gl_file *f) {
  struct stat st;
  if (!f->watched || (stat(f->path, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino))
    return;
  int fd = open_file(f); /* on success, notes the new file's identity */
  if (fd < 0) {
    if (!f->reopen_failing)
      report(f, "cannot be reopened after a rotation, lines go on to the old file", errno);
    f->reopen_failing = true;
    return;
  }
  close(f->fd);
  f->fd = fd;
  if (f->reopen_failing) report(f, "reopened", 0);
  f->reopen_failing = false;
}

/* Takes what is pending and writes it, in order with every other flush of the file. */
static void flush_file(gl_file *f) {
  pthread_mutex_lock(&f->write_mu);
  pthread_mutex_lock(&f->mu);
  gw_out out = f->pending;
  f->pending = f->spare;
  f->pending.length = 0;
  f->spare = (gw_out){0};
  bool dropped = f->dropping;
  f->dropping = false;
  pthread_mutex_unlock(&f->mu);
  if (dropped) report(f, "buffer full (the file takes no writes), lines dropped", 0);
  if (out.length > 0) {
    follow_rotation(f);
    write_out(f, out.ptr, out.length);
  }
  out.length = 0;
  out.failed = false;
  pthread_mutex_lock(&f->mu);
  if (f->spare.ptr == NULL) f->spare = out;
  else free(out.ptr);
  pthread_mutex_unlock(&f->mu);
  pthread_mutex_unlock(&f->write_mu);
}

static void *flusher(void *arg) {
  gl_file *f = arg;
  for (;;) {
    pthread_mutex_lock(&f->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += f->flush_ms / 1000;
    until.tv_nsec += (f->flush_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (!f->stop && f->pending.length < FLUSH_BYTES)
      if (pthread_cond_timedwait(&f->wake, &f->mu, &until) == ETIMEDOUT) break;
    bool stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    flush_file(f);
    if (stop) return NULL;
  }
}

static gl_file *file_acquire(const char *path, long flush_ms) {
  pthread_mutex_lock(&files_mu);
  gl_file *f;
  for (f = files; f != NULL; f = f->next)
    if (strcmp(f->path, path) == 0) break;
  if (f != NULL) {
    f->refs++;
    pthread_mutex_unlock(&files_mu);
    return f;
  }
  f = calloc(1, sizeof *f);
  if (f == NULL || (f->path = strdup(path)) == NULL) goto fail;
  f->flush_ms = flush_ms;
  f->watched = strcmp(path, "/dev/stdout") != 0 && strcmp(path, "/dev/stderr") != 0;
  f->fd = open_file(f);
  if (f->fd < 0) {
    report(f, "cannot be opened", errno);
    goto fail;
  }
  pthread_mutex_init(&f->mu, NULL);
  pthread_mutex_init(&f->write_mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_cond_init(&f->wake, &attr);
  pthread_condattr_destroy(&attr);
  if (pthread_create(&f->thread, NULL, flusher, f) != 0) {
    report(f, "no flusher thread", 0);
    close(f->fd);
    pthread_mutex_destroy(&f->mu);
    pthread_mutex_destroy(&f->write_mu);
    pthread_cond_destroy(&f->wake);
    goto fail;
  }
  f->refs = 1;
  f->next = files;
  files = f;
  pthread_mutex_unlock(&files_mu);
  return f;
fail:
  if (f != NULL) free(f->path);
  free(f);
  pthread_mutex_unlock(&files_mu);
  return NULL;
}

static void file_release(gl_file *f) {
  pthread_mutex_lock(&files_mu);
  if (--f->refs > 0) {
    pthread_mutex_unlock(&files_mu);
    return;
  }
  for (gl_file **at = &files; *at != NULL; at = &(*at)->next)
    if (*at == f) {
      *at = f->next;
      break;
    }
  pthread_mutex_unlock(&files_mu);
  pthread_mutex_lock(&f->mu);
  f->stop = true;
  pthread_cond_signal(&f->wake);
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->thread, NULL); /* it writes what is left, then ends */
  close(f->fd);
  pthread_mutex_destroy(&f->mu);
  pthread_mutex_destroy(&f->write_mu);
  pthread_cond_destroy(&f->wake);
  free(f->pending.ptr);
  free(f->spare.ptr);
  free(f->path);
  free(f);
}

/* At exit (Envoy returning from main, or exit()): what is still pending is written. */
__attribute__((destructor)) static void flush_all_at_exit(void) {
  pthread_mutex_lock(&files_mu);
  for (gl_file *f = files; f != NULL; f = f->next) flush_file(f);
  pthread_mutex_unlock(&files_mu);
}

static void append(gl_file *f, const char *line, size_t n) {
  pthread_mutex_lock(&f->mu);
  if (f->pending.length + n > MAX_PENDING) {
    f->dropping = true;
  } else {
    size_t before = f->pending.length;
    put(&f->pending, line, n);
    if (f->pending.failed) { /* no memory: the line is not written, the rest is kept */
      f->pending.failed = false;
      f->pending.length = before;
      f->dropping = true;
    }
    if (f->pending.length >= FLUSH_BYTES && before < FLUSH_BYTES) pthread_cond_signal(&f->wake);
  }
  pthread_mutex_unlock(&f->mu);
}

/* ---- the logger config and the per-worker logger ---- */

enum { KEY_STRING, KEY_NUMBER, KEY_BOOL };

typedef struct {
  char *name;
  size_t length;
  int type;
} gl_key;

typedef struct {
  int kind; /* GW_KIND_LOG */
  gl_file *file;
  char *ns, *model_header;
  size_t ns_length, model_header_length;
  /* the module's limits (gw_limits.c): a 429 with this string key set is logged with flags
   * "RL", the flag a module cannot set (tests/render/test_access_log_module.py has Envoy's
   * loggers do the same for the comparison); NULL without them */
  char *limited_ns, *limited_key;
  size_t limited_ns_length, limited_key_length;
  gl_key *keys;
  size_t key_count;
  bool check; /* GATEWAYCTL_ACCESS_LOG_CHECK=1: the stream's values checked against Envoy's */
} gl_config;

typedef struct {
  const gl_config *config;
  gw_out line, check;
  long long second; /* the second `stamp` holds, or -1 */
  char stamp[19];   /* "YYYY-MM-DDTHH:MM:SS" (not NUL-terminated) */
} gl_logger;

static void config_free(gl_config *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < c->key_count; i++) free(c->keys[i].name);
  free(c->keys);
  free(c->ns);
  free(c->model_header);
  free(c->limited_ns);
  free(c->limited_key);
  free(c);
}

static char *copy(const gj_node *n, size_t *length) {
  if (n == NULL || n->type != GJ_STRING || n->length == 0) return NULL;
  char *s = malloc(n->length + 1);
  if (s != NULL) {
    memcpy(s, n->string, n->length + 1);
    *length = n->length;
  }
  return s;
}

/* {"abi", "path", "flush_ms", "namespace", "model_header", "keys": {name: "string" |
 * "number" | "bool", ...}, optionally "limited": {"namespace", "key"}} (the renderer's
 * access_log.py); NULL if any part is not valid. */
static gl_config *config_parse(const gj_node *root, bool validating) {
  const gj_node *path = gj_get(root, "path"), *flush = gj_get(root, "flush_ms"),
                *keys = gj_get(root, "keys");
  if (path == NULL || path->type != GJ_STRING || path->length == 0 || flush == NULL ||
      flush->type != GJ_NUMBER || flush->number < 1 || flush->number > 3600000 ||
      keys == NULL || keys->type != GJ_OBJECT)
    return NULL;
  gl_config *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->kind = GW_KIND_LOG;
  c->ns = copy(gj_get(root, "namespace"), &c->ns_length);
  c->model_header = copy(gj_get(root, "model_header"), &c->model_header_length);
  c->keys = calloc(keys->count ? keys->count : 1, sizeof *c->keys);
  if (c->ns == NULL || c->model_header == NULL || c->keys == NULL) goto fail;
  const gj_node *limited = gj_get(root, "limited");
  if (limited != NULL) {
    c->limited_ns = copy(gj_get(limited, "namespace"), &c->limited_ns_length);
    c->limited_key = copy(gj_get(limited, "key"), &c->limited_key_length);
    if (c->limited_ns == NULL || c->limited_key == NULL) goto fail;
  }
  const gl_key *previous = NULL;
  for (const gj_node *k = keys->first; k != NULL; k = k->next) {
    gl_key *key = &c->keys[c->key_count];
    if (k->type != GJ_STRING || k->key_length == 0) goto fail;
    key->type = strcmp(k->string, "string") == 0   ? KEY_STRING
                : strcmp(k->string, "number") == 0 ? KEY_NUMBER
                : strcmp(k->string, "bool") == 0   ? KEY_BOOL
                                                   : -1;
    if (key->type < 0) goto fail;
    key->length = k->key_length;
    key->name = malloc(k->key_length + 1);
    if (key->name == NULL) goto fail;
    memcpy(key->name, k->key, k->key_length + 1);
    c->key_count++;
    /* written in this order, so it must be Envoy's (sorted, no repeats) */
    if (previous != NULL && strcmp(previous->name, key->name) >= 0) goto fail;
    previous = key;
  }
  const char *check = getenv("GATEWAYCTL_ACCESS_LOG_CHECK");
  c->check = check != NULL && strcmp(check, "1") == 0;
  /* Envoy's config validation (envoy --mode validate) opens no file and starts no thread */
  if (!validating) {
    c->file = file_acquire(path->string, (long)flush->number);
    if (c->file == NULL) goto fail;
  }
  return c;
fail:
  config_free(c);
  return NULL;
}

gw_module_ptr envoy_dynamic_module_on_access_logger_config_new(gw_envoy_ptr envoy_config,
                                                               gw_buffer name, gw_buffer value) {
  (void)envoy_config;
  if (name.length != 4 || memcmp(name.ptr, "json", 4) != 0) return NULL;
  gj_node *root = gj_parse(value.ptr, value.length);
  const gj_node *abi = gj_get(root, "abi");
  gl_config *c = NULL;
  if (abi != NULL && abi->type == GJ_STRING && strcmp(abi->string, GW_ABI_VERSION) == 0)
    c = config_parse(root, envoy_dynamic_module_callback_is_validation_mode());
  gj_free(root);
  return c;
}

void envoy_dynamic_module_on_access_logger_config_destroy(gw_module_ptr self) {
  gl_config *c = (gl_config *)self;
  if (c->file != NULL) file_release(c->file);
  config_free(c);
}

gw_module_ptr envoy_dynamic_module_on_access_logger_new(gw_module_ptr config,
                                                        gw_envoy_ptr logger) {
  (void)logger;
  gl_logger *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  l->config = config;
  l->second = -1;
  return l;
}

void envoy_dynamic_module_on_access_logger_flush(gw_module_ptr self) {
  const gl_logger *l = self;
  if (l->config->file != NULL) flush_file(l->config->file);
}

void envoy_dynamic_module_on_access_logger_destroy(gw_module_ptr self) {
  gl_logger *l = (gl_logger *)self;
  free(l->line.ptr);
  free(l->check.ptr);
  free(l);
}

/* ---- one line ---- */

static const char *const FLAG_NAMES[] = {
    /* Envoy's core response flags, by bit (StreamInfo's legacyResponseFlags) */
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
    "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF",
    "DO", "DR", "UDO"};

static void put_flags(gw_out *b, uint64_t flags) {
  if (flags == 0) {
    PUTS(b, "\"-\"");
    return;
  }
  PUTS(b, "\"");
  bool first = true;
  for (size_t bit = 0; bit < sizeof FLAG_NAMES / sizeof *FLAG_NAMES; bit++) {
    if (!(flags & ((uint64_t)1 << bit))) continue;
    if (!first) PUTS(b, ",");
    put(b, FLAG_NAMES[bit], strlen(FLAG_NAMES[bit]));
    first = false;
  }
  PUTS(b, "\"");
}

static void put_buffer_or_null(gw_out *b, bool present, gw_buffer v) {
  if (present) put_string(b, v.ptr, v.length);
  else PUTS(b, "null");
}

static bool request_header(gw_envoy_ptr e, int type, const char *name, gw_buffer *out) {
  gw_buffer key = {name, strlen(name)};
  return envoy_dynamic_module_callback_access_logger_get_header_value(e, type, key, out, 0, NULL);
}

/* Nanoseconds to Envoy's whole milliseconds (truncated), or null when not measured (< 0). */
static void put_ms(gw_out *b, int64_t ns) {
  if (ns < 0) PUTS(b, "null");
  else put_u64(b, (unsigned long long)(ns / 1000000));
}

static void put_start_time(gw_out *b, gl_logger *l, int64_t unix_ns) {
  long long second = unix_ns >= 0 ? unix_ns / 1000000000 : (unix_ns + 1) / 1000000000 - 1;
  int ms = (int)((unix_ns - second * 1000000000) / 1000000);
  if (second != l->second) {
    time_t t = (time_t)second;
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[80]; /* the year may have more digits than four */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(l->stamp, tmp, 19);
    l->second = second;
  }
  char out[28];
  memcpy(out, "\"", 1);
  memcpy(out + 1, l->stamp, 19);
  out[20] = '.';
  out[21] = (char)('0' + ms / 100);
  out[22] = (char)('0' + ms / 10 % 10);
  out[23] = (char)('0' + ms % 10);
  out[24] = 'Z';
  out[25] = '"';
  put(b, out, 26);
}

/* One member of the `gateway` object, after `{` (the first) or `,`: `"key":` and the value
 * as the key's type says (only that field of v is read). */
static inline void put_member(gw_out *b, bool first, const gl_key *k, const gw_log_value *v) {
  put(b, first ? "{" : ",", 1);
  put_string(b, k->name, k->length);
  PUTS(b, ":");
  if (k->type == KEY_STRING) put_string(b, v->string, v->length);
  else if (k->type == KEY_NUMBER) put_number(b, v->number);
  else if (v->flag) PUTS(b, "true");
  else PUTS(b, "false");
}

static void put_gateway(gw_out *b, gw_envoy_ptr e, const gl_config *c) {
  gw_buffer ns = {c->ns, c->ns_length};
  bool any = false;
  for (size_t i = 0; i < c->key_count; i++) {
    const gl_key *k = &c->keys[i];
    gw_buffer key = {k->name, k->length};
    gw_buffer s = {NULL, 0};
    gw_log_value v = {.number = 0, .flag = false};
    bool found = k->type == KEY_STRING
                     ? envoy_dynamic_module_callback_access_logger_get_dynamic_metadata(e, ns, key,
                                                                                       &s)
                 : k->type == KEY_NUMBER
                     ? envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_number(
                           e, ns, key, &v.number)
                     : envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_bool(
                           e, ns, key, &v.flag);
    if (!found) continue;
    v.string = s.ptr;
    v.length = (uint32_t)s.length; /* a protobuf string's: below 2 GiB */
    put_member(b, !any, k, &v);
    any = true;
  }
  if (any) PUTS(b, "}");
  else PUTS(b, "null");
}

/* The same object from the values the module's body filter noted on the stream it served
 * (gw_body.h): what those writes left in the stream's metadata, without a lookup per key. */
static void put_gateway_noted(gw_out *b, const gw_log_values *noted, const gl_config *c) {
  bool any = false;
  for (size_t i = 0; i < c->key_count; i++) {
    const gl_key *k = &c->keys[i];
    const gw_log_value *v = NULL;
    for (size_t j = 0; j < noted->count; j++)
      if (noted->values[j].key_length == k->length &&
          memcmp(noted->values[j].key, k->name, k->length) == 0) {
        v = &noted->values[j];
        break;
      }
    /* a value of another type is not found, as by the typed callbacks */
    if (v == NULL || v->type != (k->type == KEY_STRING   ? GW_LOG_STRING
                                 : k->type == KEY_NUMBER ? GW_LOG_NUMBER
                                                         : GW_LOG_BOOL))
      continue;
    put_member(b, !any, k, v);
    any = true;
  }
  if (any) PUTS(b, "}");
  else PUTS(b, "null");
}

/* The stream the module's body filter served for this line, or NULL: a stream the module did
 * not serve (another route, a local reply before it, GET /v1/models) or whose values did not
 * all fit, whose values are then read through Envoy. */
static const gw_body_stream *served_stream(const gl_config *c) {
  const gw_body_stream *s = gw_log_stream();
  if (s == NULL || s->route == NULL || s->log == NULL || s->log_lost || s->log->overflow ||
      s->log->ns_length != c->ns_length || memcmp(s->log->ns, c->ns, c->ns_length) != 0)
    return NULL;
  return s;
}

/* `gateway`, `method` and `model`'s values (the keys between them) through Envoy. */
static void put_looked_up(gw_out *b, gw_envoy_ptr e, const gl_config *c, bool has_host) {
  gw_buffer v;
  put_gateway(b, e, c);
  PUTS(b, ",\"method\":");
  put_buffer_or_null(b, request_header(e, GW_REQUEST_HEADERS, ":method", &v), v);
  PUTS(b, ",\"model\":");
  put_buffer_or_null(b, has_host && request_header(e, GW_RESPONSE_HEADERS, c->model_header, &v),
                     v);
}

/* The same from the stream the module served: its noted `gw` values; POST, the only method
 * it serves; the answering model its response path read from the same response header (a
 * success's, when it fitted), else through Envoy. */
static void put_served(gw_out *b, gw_envoy_ptr e, const gl_config *c, const gw_body_stream *s,
                       bool has_host) {
  put_gateway_noted(b, s->log, c);
  PUTS(b, ",\"method\":\"POST\",\"model\":");
  gw_buffer v;
  if (!has_host)
    PUTS(b, "null");
  else if (s->has_model && s->log->model_header_length == c->model_header_length &&
           memcmp(s->log->model_header, c->model_header, c->model_header_length) == 0)
    put_string(b, s->model, s->model_length);
  else
    put_buffer_or_null(b, request_header(e, GW_RESPONSE_HEADERS, c->model_header, &v), v);
}

/* GATEWAYCTL_ACCESS_LOG_CHECK=1: for a line written from the served stream, the same values
 * read through Envoy, and one line on stderr saying whether they are the same (the tests'
 * proof that the stream is there and right when the logger runs). */
static void check_served(gw_envoy_ptr e, gl_logger *l, const gw_body_stream *s, bool has_host) {
  gw_out *b = &l->check;
  b->length = 0;
  b->failed = false;
  put_looked_up(b, e, l->config, has_host);
  size_t envoys = b->length;
  put_served(b, e, l->config, s, has_host);
  bool same = b->length == 2 * envoys && memcmp(b->ptr, b->ptr + envoys, envoys) == 0;
  gw_out out = {0};
  PUTS(&out, "gatewayctl access log check: ");
  if (same) PUTS(&out, "same ");
  else PUTS(&out, "differs ");
  gw_buffer id;
  put_buffer_or_null(&out, request_header(e, GW_REQUEST_HEADERS, "x-request-id", &id), id);
  if (!same) {
    PUTS(&out, " envoy ");
    put(&out, b->ptr, envoys);
    PUTS(&out, " served ");
    put(&out, b->ptr + envoys, b->length - envoys);
  }
  PUTS(&out, "\n");
  if (!out.failed) {
    ssize_t ignored = write(STDERR_FILENO, out.ptr, out.length);
    (void)ignored;
  }
  free(out.ptr);
}

static void put_host(gw_out *b, bool present, gw_buffer address, uint32_t port) {
  if (!present) {
    PUTS(b, "null");
    return;
  }
  bool v6 = memchr(address.ptr, ':', address.length) != NULL;
  PUTS(b, "\"");
  if (v6) PUTS(b, "[");
  put(b, address.ptr, address.length);
  if (v6) PUTS(b, "]");
  PUTS(b, ":");
  put_u64(b, port);
  PUTS(b, "\"");
}

void envoy_dynamic_module_on_access_logger_log(gw_envoy_ptr e, gw_module_ptr self, int type) {
  (void)type; /* every kind of log call Envoy makes: the file logger writes each too */
  gl_logger *l = (gl_logger *)self;
  const gl_config *c = l->config;
  if (c->file == NULL) return;
  gw_out *b = &l->line;
  b->length = 0;
  b->failed = false;

  gw_buffer v;
  gw_access_log_timing timing;
  envoy_dynamic_module_callback_access_logger_get_timing_info(e, &timing);
  gw_access_log_bytes bytes;
  envoy_dynamic_module_callback_access_logger_get_bytes_info(e, &bytes);
  gw_buffer host;
  uint32_t port = 0;
  bool has_host =
      envoy_dynamic_module_callback_access_logger_get_upstream_remote_address(e, &host, &port);

  PUTS(b, "{\"attempts\":");
  put_u64(b, envoy_dynamic_module_callback_access_logger_get_attempt_count(e));
  PUTS(b, ",\"backend_cluster\":");
  put_buffer_or_null(b, envoy_dynamic_module_callback_access_logger_get_upstream_cluster(e, &v),
                     v);
  PUTS(b, ",\"bytes_received\":");
  put_u64(b, bytes.bytes_received);
  PUTS(b, ",\"bytes_sent\":");
  put_u64(b, bytes.bytes_sent);
  PUTS(b, ",\"details\":");
  put_buffer_or_null(
      b, envoy_dynamic_module_callback_access_logger_get_response_code_details(e, &v), v);
  PUTS(b, ",\"duration_ms\":");
  put_ms(b, timing.request_complete_duration_ns);
  uint32_t status = envoy_dynamic_module_callback_access_logger_get_response_code(e);
  PUTS(b, ",\"flags\":");
  if (status == 429 && c->limited_key != NULL &&
      envoy_dynamic_module_callback_access_logger_get_dynamic_metadata(
          e, (gw_buffer){c->limited_ns, c->limited_ns_length},
          (gw_buffer){c->limited_key, c->limited_key_length}, &v))
    PUTS(b, "\"RL\"");
  else
    put_flags(b, envoy_dynamic_module_callback_access_logger_get_response_flags(e));
  PUTS(b, ",\"gateway\":");
  const gw_body_stream *served = served_stream(c);
  if (served != NULL) {
    put_served(b, e, c, served, has_host);
    if (c->check) check_served(e, l, served, has_host);
  } else {
    put_looked_up(b, e, c, has_host);
  }
  PUTS(b, ",\"path\":");
  put_buffer_or_null(b,
                     request_header(e, GW_REQUEST_HEADERS, "x-envoy-original-path", &v) ||
                         request_header(e, GW_REQUEST_HEADERS, ":path", &v),
                     v);
  PUTS(b, ",\"request_id\":");
  put_buffer_or_null(b, request_header(e, GW_REQUEST_HEADERS, "x-request-id", &v), v);
  PUTS(b, ",\"start_time\":");
  put_start_time(b, l, timing.start_time_unix_ns);
  PUTS(b, ",\"status\":");
  put_u64(b, status);
  PUTS(b, ",\"upstream_host\":");
  put_host(b, has_host, host, port);
  PUTS(b, ",\"upstream_ms\":");
  put_ms(b, timing.first_upstream_rx_byte_received_ns);
  PUTS(b, "}\n");
  if (!b->failed) append(c->file, b->ptr, b->length);
}
