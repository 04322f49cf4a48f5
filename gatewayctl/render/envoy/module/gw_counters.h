/* The per-consumer counters, counted by the compiled body filter itself on the routes it
 * serves (the stats access logger counts them for the routes the Lua body filter serves,
 * render/envoy/access_log.py): envoy_gatewayctl_consumer_{requests,prompt_tokens,
 * completion_tokens,cost_nano_usd}{consumer,route,model}, the names, labels and values the
 * logger gives them (render/envoy/metrics.py). Envoy keeps a dynamic module's counters in the
 * stats scope named by the filter's dynamic_module_config.metrics_namespace, which the
 * renderer sets to `gatewayctl`. */
#ifndef GW_COUNTERS_H
#define GW_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>

#include "gw_abi.h"

enum { GW_COUNTER_REQUESTS, GW_COUNTER_PROMPT, GW_COUNTER_COMPLETION, GW_COUNTER_COST,
       GW_COUNTERS };

/* The ids Envoy gave the counters when the filter's config was made. */
typedef struct {
  size_t ids[GW_COUNTERS];
} gw_counters;

/* Defines the counters on the filter config `config`; false if Envoy refused one. */
bool gw_counters_define(gw_envoy_ptr config, gw_counters *counters);

/* One successful reply with a usage: +1 request, its tokens and its cost (nano-USD), labelled
 * with the consumer, the route and the answering model. */
void gw_counters_count(gw_envoy_ptr filter, const gw_counters *counters, gw_buffer consumer,
                       gw_buffer route, gw_buffer model, double prompt, double completion,
                       double cost_nano_usd);

#endif
