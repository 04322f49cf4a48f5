/* A bounded JSON reader for the module's filter config (the data the renderer emits).
 *
 * The config comes from gatewayctl's renderer, but the parser treats it as untrusted bytes:
 * every read is bounds-checked, depth, size and node count are capped, numbers are integers
 * that fit in 53 bits, strings are decoded (escapes, \uXXXX with surrogate pairs) into
 * NUL-terminated copies and may not contain NUL. Any other input is a parse error, never
 * undefined behaviour. */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define GJ_MAX_INPUT (1u << 20) /* bytes */
#define GJ_MAX_DEPTH 16
#define GJ_MAX_NODES 65536

typedef enum { GJ_NULL, GJ_BOOL, GJ_NUMBER, GJ_STRING, GJ_ARRAY, GJ_OBJECT } gj_type;

typedef struct gj_node {
  gj_type type;
  bool boolean;
  long long number;
  char *string; /* GJ_STRING: decoded, NUL-terminated */
  size_t length;
  char *key; /* a member of an object: its name, decoded */
  size_t key_length;
  struct gj_node *first; /* GJ_ARRAY / GJ_OBJECT: the first element */
  struct gj_node *next;  /* the next element of the parent */
  size_t count;          /* GJ_ARRAY / GJ_OBJECT: number of elements */
} gj_node;

/* The value in text[0..length), or NULL (a parse error or no memory). */
gj_node *gj_parse(const char *text, size_t length);
void gj_free(gj_node *node);
/* An object's member by name, or NULL (also when node is not an object). */
const gj_node *gj_get(const gj_node *object, const char *key);

#endif
