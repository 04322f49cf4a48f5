/* The bounded JSON reader (gw_json.h). Recursive descent with an explicit depth cap, so the
 * recursion is bounded too. */
#include "gw_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GJ_MAX_INTEGER 9007199254740992LL /* 2^53 */

typedef struct {
  const char *p, *end;
  size_t nodes;
} reader;

static void skip_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

static gj_node *new_node(reader *r, gj_type type) {
  if (++r->nodes > GJ_MAX_NODES) return NULL;
  gj_node *node = calloc(1, sizeof *node);
  if (node != NULL) node->type = type;
  return node;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Four hex digits at r->p; -1 if not. */
static long read_hex4(reader *r) {
  if (r->end - r->p < 4) return -1;
  long value = 0;
  for (int i = 0; i < 4; i++) {
    int d = hex_digit(r->p[i]);
    if (d < 0) return -1;
    value = value * 16 + d;
  }
  r->p += 4;
  return value;
}

static size_t put_utf8(char *out, unsigned long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* r->p at the opening quote: a decoded copy (NUL-terminated) and its length; NULL on error.
 * A decoded string is never longer than its escaped form, so the copy needs at most the
 * input's remaining length. */
static char *read_string(reader *r, size_t *length) {
  if (r->p >= r->end || *r->p != '"') return NULL;
  r->p++;
  const char *close = r->p;
  while (close < r->end && *close != '"') {
    if (*close == '\\') {
      if (r->end - close < 2) return NULL;
      close += 2;
    } else {
      close++;
    }
  }
  if (close >= r->end) return NULL;
  char *out = malloc((size_t)(close - r->p) + 1);
  if (out == NULL) return NULL;
  size_t n = 0;
  while (r->p < close) {
    unsigned char c = (unsigned char)*r->p++;
    if (c < 0x20) goto fail;
    if (c != '\\') {
      out[n++] = (char)c;
      continue;
    }
    if (r->p >= close) goto fail;
    char e = *r->p++;
    switch (e) {
      case '"': out[n++] = '"'; break;
      case '\\': out[n++] = '\\'; break;
      case '/': out[n++] = '/'; break;
      case 'b': out[n++] = '\b'; break;
      case 'f': out[n++] = '\f'; break;
      case 'n': out[n++] = '\n'; break;
      case 'r': out[n++] = '\r'; break;
      case 't': out[n++] = '\t'; break;
      case 'u': {
        long cp = read_hex4(r);
        if (cp <= 0) goto fail; /* invalid, or NUL (no NUL in the module's strings) */
        if (cp >= 0xDC00 && cp <= 0xDFFF) goto fail;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (close - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u') goto fail;
          r->p += 2;
          long low = read_hex4(r);
          if (low < 0xDC00 || low > 0xDFFF) goto fail;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        /* \uXXXX is 6 bytes and yields at most 3, a pair is 12 and yields 4 */
        n += put_utf8(out + n, (unsigned long)cp);
        break;
      }
      default: goto fail;
    }
  }
  if (r->p > close) goto fail; /* an escape ran into the closing quote */
  r->p = close + 1;
  out[n] = '\0';
  *length = n;
  return out;
fail:
  free(out);
  return NULL;
}

static gj_node *read_value(reader *r, int depth);

static bool read_literal(reader *r, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return false;
  r->p += n;
  return true;
}

static gj_node *read_number(reader *r) {
  bool negative = false;
  if (r->p < r->end && *r->p == '-') {
    negative = true;
    r->p++;
  }
  if (r->p >= r->end || *r->p < '0' || *r->p > '9') return NULL;
  if (*r->p == '0' && r->end - r->p > 1 && r->p[1] >= '0' && r->p[1] <= '9') return NULL;
  long long value = 0;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
    value = value * 10 + (*r->p++ - '0');
    if (value > GJ_MAX_INTEGER) return NULL; /* checked each digit: no overflow */
  }
  if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E')) return NULL;
  gj_node *node = new_node(r, GJ_NUMBER);
  if (node != NULL) node->number = negative ? -value : value;
  return node;
}

/* Elements of an array or members of an object; r->p after the opening bracket. */
static gj_node *read_container(reader *r, int depth, bool object) {
  gj_node *node = new_node(r, object ? GJ_OBJECT : GJ_ARRAY);
  if (node == NULL) return NULL;
  gj_node **tail = &node->first;
  char close = object ? '}' : ']';
  skip_ws(r);
  if (r->p < r->end && *r->p == close) {
    r->p++;
    return node;
  }
  for (;;) {
    char *key = NULL;
    size_t key_length = 0;
    skip_ws(r);
    if (object) {
      key = read_string(r, &key_length);
      if (key == NULL) goto fail;
      skip_ws(r);
      if (r->p >= r->end || *r->p != ':') {
        free(key);
        goto fail;
      }
      r->p++;
      skip_ws(r);
    }
    gj_node *child = read_value(r, depth + 1);
    if (child == NULL) {
      free(key);
      goto fail;
    }
    child->key = key;
    child->key_length = key_length;
    *tail = child;
    tail = &child->next;
    node->count++;
    skip_ws(r);
    if (r->p < r->end && *r->p == ',') {
      r->p++;
      continue;
    }
    if (r->p < r->end && *r->p == close) {
      r->p++;
      return node;
    }
    goto fail;
  }
fail:
  gj_free(node);
  return NULL;
}

static gj_node *read_value(reader *r, int depth) {
  if (depth > GJ_MAX_DEPTH) return NULL;
  skip_ws(r);
  if (r->p >= r->end) return NULL;
  gj_node *node;
  switch (*r->p) {
    case '{':
    case '[': {
      bool object = *r->p == '{';
      r->p++;
      return read_container(r, depth, object);
    }
    case '"': {
      size_t length;
      char *s = read_string(r, &length);
      if (s == NULL) return NULL;
      node = new_node(r, GJ_STRING);
      if (node == NULL) {
        free(s);
        return NULL;
      }
      node->string = s;
      node->length = length;
      return node;
    }
    case 't':
    case 'f': {
      bool value = *r->p == 't';
      if (!read_literal(r, value ? "true" : "false")) return NULL;
      node = new_node(r, GJ_BOOL);
      if (node != NULL) node->boolean = value;
      return node;
    }
    case 'n':
      if (!read_literal(r, "null")) return NULL;
      return new_node(r, GJ_NULL);
    default:
      return read_number(r);
  }
}

gj_node *gj_parse(const char *text, size_t length) {
  if (text == NULL || length > GJ_MAX_INPUT) return NULL;
  reader r = {text, text + length, 0};
  gj_node *root = read_value(&r, 0);
  if (root == NULL) return NULL;
  skip_ws(&r);
  if (r.p != r.end) {
    gj_free(root);
    return NULL;
  }
  return root;
}

void gj_free(gj_node *node) {
  /* siblings iteratively, children recursively (depth is capped) */
  while (node != NULL) {
    gj_node *next = node->next;
    gj_free(node->first);
    free(node->string);
    free(node->key);
    free(node);
    node = next;
  }
}

const gj_node *gj_get(const gj_node *object, const char *key) {
  if (object == NULL || object->type != GJ_OBJECT) return NULL;
  size_t n = strlen(key);
  const gj_node *found = NULL;
  for (const gj_node *m = object->first; m != NULL; m = m->next)
    if (m->key_length == n && memcmp(m->key, key, n) == 0) found = m; /* the last one wins */
  return found;
}
