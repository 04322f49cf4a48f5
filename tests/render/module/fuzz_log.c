/* A seeded random harness for the compiled access logger (module/gw_log.c), built with its
 * sources and -fsanitize=address,undefined (tests/render/test_access_log_fuzz.py): Envoy's
 * access-logger callbacks are stubbed over a random record per log call (strings of random
 * bytes, valid and invalid UTF-8, control bytes, quotes, backslashes; random doubles, bools,
 * times, flags, absent values), each handed over in a buffer of its exact size; THREADS
 * threads, each with its own logger, log RECORDS records each into one file at once.
 * Writes LOGFILE (the logger's lines) and, on stdout, one line per record with what was handed
 * over, fields separated by tabs, bytes in hex, "-" for absent:
 *   id path method details cluster model host port ns_string number(%a) bool status flags
 *   attempts received sent start_ns duration_ns upstream_ns
 * Half the records are handed over as a stream the module's body filter served instead
 * (gw_log_stream(), gw_body.h): the `gw` values noted on it, in a random order with a key the
 * logger does not list, the method POST and, at random, the model its response path kept; the
 * callbacks for what the stream holds then abort if called; the line must be the same either
 * way.
 * With ROTATE 1, a thread renames LOGFILE to LOGFILE.1, LOGFILE.2, ... every 2 ms while the
 * threads log (a rotation: the logger must follow the path to its new file), and prints the
 * number of renames on stderr.
 * Usage: fuzz_log LOGFILE SEED RECORDS THREADS [ROTATE] */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_body.h"

typedef struct {
  char *bytes;
  size_t length;
  bool present;
} field;

typedef struct {
  uint64_t rng;
  char id[32];
  field path, method, details, cluster, model, host, ns_string;
  bool has_number, has_bool, flag;
  double number;
  uint32_t port, status, attempts;
  uint64_t flags, received, sent;
  int64_t start_ns, duration_ns, upstream_ns;
  char *out;
  size_t out_length, out_cap;
  bool noted; /* handed over as a served stream's noted values */
  gw_body_stream stream;
  gw_log_values log;
} record;

static __thread record *cur;

const gw_body_stream *gw_log_stream(void) {
  return cur != NULL && cur->noted ? &cur->stream : NULL;
}
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t next(record *r) {
  r->rng ^= r->rng << 13;
  r->rng ^= r->rng >> 7;
  r->rng ^= r->rng << 17;
  return r->rng;
}
static size_t below(record *r, size_t n) { return n == 0 ? 0 : (size_t)(next(r) % n); }

static const char *const PIECES[] = {"a", "\"", "\\", "\t", "\n", "\x01", "\x1f", "\x7f", "<",
                                     "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff",
                                     "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf",
                                     "\xef\xbf\xbf", "/v1/chat", " ", "\x00", "z"};

static void random_field(record *r, field *f, bool may_be_absent) {
  free(f->bytes);
  f->bytes = NULL;
  f->length = 0;
  f->present = !may_be_absent || below(r, 5) != 0;
  if (!f->present) return;
  char tmp[256];
  size_t n = 0, parts = below(r, 8);
  for (size_t i = 0; i < parts; i++) {
    const char *p = PIECES[below(r, sizeof PIECES / sizeof *PIECES)];
    size_t len = p[0] == '\0' ? 1 : strlen(p);
    if (below(r, 4) == 0) { /* a random byte */
      tmp[n++] = (char)below(r, 256);
      continue;
    }
    memcpy(tmp + n, p, len);
    n += len;
  }
  f->bytes = malloc(n ? n : 1); /* exactly its size: a read past it is caught */
  memcpy(f->bytes, tmp, n);
  f->length = n;
}

static double random_double(record *r) {
  switch (below(r, 6)) {
    case 0: return (double)below(r, 100000);
    case 1: return (double)(int64_t)next(r) / (double)(1 + below(r, 1000000));
    case 2: return (double)below(r, 100000000) / 1e8; /* a cost */
    case 3: {
      uint64_t bits = next(r);
      double d;
      memcpy(&d, &bits, sizeof d);
      return d; /* any double: NaN and infinities too */
    }
    case 4: return (double)below(r, 1000) * 1e15;
    default: return -(double)below(r, 1000) / 7.0;
  }
}

static void randomize(record *r, int thread, int n) {
  snprintf(r->id, sizeof r->id, "t%d-%d", thread, n);
  random_field(r, &r->path, true);
  random_field(r, &r->method, true);
  random_field(r, &r->details, true);
  random_field(r, &r->cluster, true);
  random_field(r, &r->model, true);
  random_field(r, &r->ns_string, true);
  free(r->host.bytes);
  r->host.present = below(r, 3) != 0;
  const char *host = below(r, 2) ? "127.0.0.1" : "::1";
  r->host.length = strlen(host);
  r->host.bytes = malloc(r->host.length);
  memcpy(r->host.bytes, host, r->host.length);
  r->port = (uint32_t)below(r, 65536);
  r->has_number = below(r, 4) != 0;
  r->number = random_double(r);
  r->has_bool = below(r, 2) != 0;
  r->flag = below(r, 2) != 0;
  r->status = (uint32_t)below(r, 600);
  r->flags = below(r, 2) ? 0 : next(r) & ((1u << 30) - 1);
  r->attempts = (uint32_t)below(r, 5);
  r->received = next(r) >> below(r, 64);
  r->sent = next(r) >> below(r, 64);
  r->start_ns = (int64_t)(next(r) % 4102444800000000000ull); /* before 2100 */
  r->duration_ns = below(r, 4) ? (int64_t)below(r, 5000000000ull) : -1;
  r->upstream_ns = below(r, 3) ? (int64_t)below(r, 5000000000ull) : -1;
  r->noted = below(r, 2) != 0;
  if (!r->noted) return;
  /* the values as the body filter notes them: in any order, a key the logger does not read */
  gw_log_values *l = &r->log;
  memset(&r->stream, 0, sizeof r->stream);
  memset(l, 0, sizeof *l);
  r->stream.route = r; /* served */
  r->stream.log = l;
  /* a served stream's method is POST; its model, when its response path kept it */
  free(r->method.bytes);
  r->method = (field){malloc(4), 4, true};
  memcpy(r->method.bytes, "POST", 4);
  l->model_header = "x-gateway-model";
  l->model_header_length = 15;
  if (r->model.present && r->model.length <= sizeof r->stream.model && below(r, 2) != 0) {
    memcpy(r->stream.model, r->model.bytes, r->model.length);
    r->stream.model_length = r->model.length;
    r->stream.has_model = true;
  }
  l->ns = "gw";
  l->ns_length = 2;
  gw_log_value values[4];
  size_t count = 0;
  values[count++] = (gw_log_value){.key = "zz", .key_length = 2, .type = GW_LOG_STRING,
                                   .string = "x", .length = 1};
  if (r->ns_string.present)
    values[count++] = (gw_log_value){.key = "s", .key_length = 1, .type = GW_LOG_STRING,
                                     .string = r->ns_string.bytes, .length = r->ns_string.length};
  if (r->has_number)
    values[count++] = (gw_log_value){.key = "n", .key_length = 1, .type = GW_LOG_NUMBER,
                                     .number = r->number};
  if (r->has_bool)
    values[count++] = (gw_log_value){.key = "b", .key_length = 1, .type = GW_LOG_BOOL,
                                     .flag = r->flag};
  size_t first = below(r, count);
  for (size_t i = 0; i < count; i++) l->values[i] = values[(first + i) % count];
  l->count = count;
}

static void out(record *r, const char *s, size_t n) {
  if (r->out_length + n > r->out_cap) {
    r->out_cap = (r->out_length + n) * 2;
    r->out = realloc(r->out, r->out_cap);
  }
  memcpy(r->out + r->out_length, s, n);
  r->out_length += n;
}
static void out_field(record *r, const field *f) {
  if (!f->present) {
    out(r, "-\t", 2);
    return;
  }
  char hex[3];
  out(r, "x", 1); /* so that an empty value is not "" */
  for (size_t i = 0; i < f->length; i++) {
    snprintf(hex, sizeof hex, "%02x", (unsigned char)f->bytes[i]);
    out(r, hex, 2);
  }
  out(r, "\t", 1);
}

static void expectation(record *r) {
  char tmp[256];
  int n = snprintf(tmp, sizeof tmp, "%s\t", r->id);
  out(r, tmp, (size_t)n);
  out_field(r, &r->path);
  out_field(r, &r->method);
  out_field(r, &r->details);
  out_field(r, &r->cluster);
  /* the model header is read only when there is a host */
  field model = r->model;
  model.present = model.present && r->host.present;
  out_field(r, &model);
  out_field(r, &r->host);
  out_field(r, &r->ns_string);
  if (r->has_number) n = snprintf(tmp, sizeof tmp, "%a\t", r->number);
  else n = snprintf(tmp, sizeof tmp, "-\t");
  out(r, tmp, (size_t)n);
  n = snprintf(tmp, sizeof tmp, "%s\t%u\t%u\t%llu\t%u\t%llu\t%llu\t%lld\t%lld\t%lld\n",
               r->has_bool ? (r->flag ? "true" : "false") : "-", r->port, r->status,
               (unsigned long long)r->flags, r->attempts, (unsigned long long)r->received,
               (unsigned long long)r->sent, (long long)r->start_ns, (long long)r->duration_ns,
               (long long)r->upstream_ns);
  out(r, tmp, (size_t)n);
}

/* ---- Envoy's callbacks, over `cur` ---- */
static bool give(const field *f, gw_buffer *o) {
  if (!f->present) return false;
  *o = (gw_buffer){f->bytes, f->length};
  return true;
}
static bool is(gw_buffer b, const char *s) {
  return b.length == strlen(s) && memcmp(b.ptr, s, b.length) == 0;
}

void envoy_dynamic_module_callback_access_logger_get_timing_info(gw_envoy_ptr l,
                                                                 gw_access_log_timing *o) {
  (void)l;
  memset(o, 0xff, sizeof *o); /* -1 */
  o->start_time_unix_ns = cur->start_ns;
  o->request_complete_duration_ns = cur->duration_ns;
  o->first_upstream_rx_byte_received_ns = cur->upstream_ns;
}
void envoy_dynamic_module_callback_access_logger_get_bytes_info(gw_envoy_ptr l,
                                                                gw_access_log_bytes *o) {
  (void)l;
  *o = (gw_access_log_bytes){cur->received, cur->sent, 0, 0};
}
bool envoy_dynamic_module_callback_access_logger_get_header_value(gw_envoy_ptr l, int type,
                                                                  gw_buffer key, gw_buffer *v,
                                                                  size_t index, size_t *count) {
  (void)l;
  if (index != 0 || count != NULL) abort();
  static const field none = {NULL, 0, false};
  field id = {cur->id, strlen(cur->id), true};
  if (type == GW_REQUEST_HEADERS) {
    if (is(key, ":method")) {
      if (cur->noted) abort(); /* a served stream's is POST */
      return give(&cur->method, v);
    }
    if (is(key, ":path")) return give(&cur->path, v);
    if (is(key, "x-request-id")) return give(&id, v);
    if (is(key, "x-envoy-original-path")) return give(&none, v);
  } else if (type == GW_RESPONSE_HEADERS && is(key, "x-gateway-model")) {
    if (cur->noted && cur->stream.has_model) abort(); /* the stream's is read instead */
    return give(&cur->model, v);
  }
  abort(); /* a header the logger has no business reading */
}
uint32_t envoy_dynamic_module_callback_access_logger_get_response_code(gw_envoy_ptr l) {
  (void)l;
  return cur->status;
}
bool envoy_dynamic_module_callback_access_logger_get_response_code_details(gw_envoy_ptr l,
                                                                           gw_buffer *o) {
  (void)l;
  return give(&cur->details, o);
}
uint64_t envoy_dynamic_module_callback_access_logger_get_response_flags(gw_envoy_ptr l) {
  (void)l;
  return cur->flags;
}
uint32_t envoy_dynamic_module_callback_access_logger_get_attempt_count(gw_envoy_ptr l) {
  (void)l;
  return cur->attempts;
}
bool envoy_dynamic_module_callback_access_logger_get_upstream_cluster(gw_envoy_ptr l,
                                                                      gw_buffer *o) {
  (void)l;
  return give(&cur->cluster, o);
}
bool envoy_dynamic_module_callback_access_logger_get_upstream_remote_address(gw_envoy_ptr l,
                                                                             gw_buffer *a,
                                                                             uint32_t *p) {
  (void)l;
  *p = cur->port;
  return give(&cur->host, a);
}
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata(gw_envoy_ptr l,
                                                                      gw_buffer n, gw_buffer k,
                                                                      gw_buffer *o) {
  (void)l;
  if (cur->noted) abort(); /* the noted values are read instead */
  if (!is(n, "gw")) abort();
  if (is(k, "s")) return give(&cur->ns_string, o);
  return false; /* "b" and "n" hold no string */
}
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_number(gw_envoy_ptr l,
                                                                             gw_buffer n,
                                                                             gw_buffer k,
                                                                             double *o) {
  (void)l;
  if (cur->noted) abort(); /* the noted values are read instead */
  if (!is(n, "gw") || !is(k, "n")) abort();
  if (cur->has_number) *o = cur->number;
  return cur->has_number;
}
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_bool(gw_envoy_ptr l,
                                                                           gw_buffer n,
                                                                           gw_buffer k, bool *o) {
  (void)l;
  if (cur->noted) abort(); /* the noted values are read instead */
  if (!is(n, "gw") || !is(k, "b")) abort();
  if (cur->has_bool) *o = cur->flag;
  return cur->has_bool;
}
bool envoy_dynamic_module_callback_is_validation_mode(void) { return false; }

static gw_module_ptr config;
static int records;
static uint64_t seed;

static void *worker(void *arg) {
  int thread = (int)(intptr_t)arg;
  record *r = calloc(1, sizeof *r);
  r->rng = seed * 2654435761u + (uint64_t)thread * 40503u + 1;
  cur = r;
  gw_module_ptr logger = envoy_dynamic_module_on_access_logger_new(config, (gw_envoy_ptr)r);
  for (int n = 0; n < records; n++) {
    randomize(r, thread, n);
    expectation(r);
    envoy_dynamic_module_on_access_logger_log((gw_envoy_ptr)r, logger, 0);
  }
  envoy_dynamic_module_on_access_logger_flush(logger);
  envoy_dynamic_module_on_access_logger_destroy(logger);
  pthread_mutex_lock(&out_mu);
  fwrite(r->out, 1, r->out_length, stdout);
  pthread_mutex_unlock(&out_mu);
  field *fields[] = {&r->path, &r->method, &r->details, &r->cluster, &r->model, &r->host,
                     &r->ns_string};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) free(fields[i]->bytes);
  free(r->out);
  free(r);
  return NULL;
}

static const char *logfile;
static atomic_bool logging_done;

static void *rotator(void *arg) {
  int *renames = arg;
  char to[4096];
  int n = 0;
  while (!atomic_load(&logging_done)) {
    snprintf(to, sizeof to, "%s.%d", logfile, n + 1);
    if (rename(logfile, to) == 0) n++; /* not there yet: no line since the last rename */
    nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  *renames = n;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) return 2;
  logfile = argv[1];
  bool rotate = argc == 6 && strcmp(argv[5], "1") == 0;
  seed = strtoull(argv[2], NULL, 10);
  records = atoi(argv[3]);
  int threads = atoi(argv[4]);
  char text[1024];
  int n = snprintf(text, sizeof text,
                   "{\"abi\":\"%s\",\"flush_ms\":5,\"keys\":{\"b\":\"bool\",\"n\":\"number\","
                   "\"s\":\"string\"},\"model_header\":\"x-gateway-model\",\"namespace\":\"gw\","
                   "\"path\":\"%s\"}",
                   GW_ABI_VERSION, argv[1]);
  gw_buffer name = {"json", 4}, value = {text, (size_t)n};
  if (envoy_dynamic_module_on_access_logger_config_new(NULL, (gw_buffer){"other", 5}, value))
    return 3; /* another logger name is refused */
  config = envoy_dynamic_module_on_access_logger_config_new(NULL, name, value);
  if (config == NULL) return 4;
  pthread_t ids[16], rotating;
  int renames = 0;
  if (rotate) pthread_create(&rotating, NULL, rotator, &renames);
  for (int t = 0; t < threads && t < 16; t++)
    pthread_create(&ids[t], NULL, worker, (void *)(intptr_t)t);
  for (int t = 0; t < threads && t < 16; t++) pthread_join(ids[t], NULL);
  if (rotate) {
    atomic_store(&logging_done, true);
    pthread_join(rotating, NULL);
    fprintf(stderr, "renames %d\n", renames);
  }
  envoy_dynamic_module_on_access_logger_config_destroy(config);
  return 0;
}
