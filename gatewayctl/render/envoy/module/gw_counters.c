/* The per-consumer counters of the compiled body filter (gw_counters.h). */
#include "gw_counters.h"

#include <stdint.h>
#include <string.h>

#define LABELS 3

bool gw_counters_define(gw_envoy_ptr config, gw_counters *counters) {
  /* metrics.py: CONSUMER, CONSUMER_KINDS and CONSUMER_TAGS, in that order */
  static const char *const names[GW_COUNTERS] = {
      "consumer.requests", "consumer.prompt_tokens", "consumer.completion_tokens",
      "consumer.cost_nano_usd"};
  gw_buffer labels[LABELS] = {{"consumer", 8}, {"route", 5}, {"model", 5}};
  for (int i = 0; i < GW_COUNTERS; i++) {
    gw_buffer name = {names[i], strlen(names[i])};
    if (envoy_dynamic_module_callback_http_filter_config_define_counter(
            config, name, labels, LABELS, &counters->ids[i]) != 0)
      return false;
  }
  return true;
}

/* A metadata number as the stats access logger counts it: a non-negative integer. */
static uint64_t whole(double value) {
  return value > 0 && value < 18446744073709551616.0 ? (uint64_t)value : 0;
}

void gw_counters_count(gw_envoy_ptr filter, const gw_counters *counters, gw_buffer consumer,
                       gw_buffer route, gw_buffer model, double prompt, double completion,
                       double cost_nano_usd) {
  gw_buffer labels[LABELS] = {consumer, route, model};
  const uint64_t values[GW_COUNTERS] = {1, whole(prompt), whole(completion),
                                        whole(cost_nano_usd)};
  for (int i = 0; i < GW_COUNTERS; i++)
    envoy_dynamic_module_callback_http_filter_increment_counter(filter, counters->ids[i], labels,
                                                                LABELS, values[i]);
}
