/*  yaml.h - reading policy values out of libfyaml documents, reporting
    what is wrong with them at their line and column. Internal to policy/.

    Every reader takes the node to read (NULL when the key had no value), a
    description of it for messages ("'provider'", "each item of 'fields'")
    and the mark to report at when the node has no position of its own. A
    reader that returns NULL or false has already reported why.
*/
#ifndef POL_YAML_H_INCLUDED
#define POL_YAML_H_INCLUDED

#include <libfyaml.h>

#include "internal.h"

/* Where errors go while one file is read. */
typedef struct {
    pol_loader_t *ld;
    size_t file;
} pol_ctx_t;

#define pol_err(c, at, ...) pol_error((c)->ld, (c)->file, (at), __VA_ARGS__)

/* One parsed file: its parser, diagnostics and single document. */
typedef struct pol_yaml_t pol_yaml_t;

/* Parses `file`, which must be UTF-8 text holding one YAML document.
   Returns NULL after reporting libfyaml's errors (or an empty file). */
pol_yaml_t *pol_yaml_parse(pol_ctx_t *c, const pol_file_t *file);
struct fy_node *pol_yaml_root(pol_yaml_t *self);
void pol_yaml_destroy(pol_yaml_t **self_p);

/* The 1-based position of `node` (its first key or item for collections),
   or `fallback` when it has none (an empty value). */
pol_mark_t pol_mark(struct fy_node *node, pol_mark_t fallback);

/* "nothing", "an alias", "a mapping", "a list" or "a single value". */
const char *pol_describe(struct fy_node *node);

/* One key a mapping may hold, and what was found for it. */
typedef struct {
    const char *name;
    bool required;
    bool seen;
    struct fy_node *value; /* NULL when seen with an empty value */
    pol_mark_t at;         /* where the key is */
} pol_key_t;

/* Matches the keys of `map` against `keys` (ended by a NULL name),
   reporting keys that are not plain names or not in the table. `kind`
   names the mapping: "a rule". */
void pol_keys(pol_ctx_t *c, struct fy_node *map, pol_key_t *keys, const char *kind, pol_mark_t at);

/* Reports each required key of `keys` that was not seen, at `at`. */
void pol_keys_required(pol_ctx_t *c, const pol_key_t *keys, const char *what, pol_mark_t at);

/* The key named `name` in a pol_keys() table. */
pol_key_t *pol_key(pol_key_t *keys, const char *name);

/* The text of a single value (scalar), valid while the document lives.
   A value holding a NUL or a control character other than tab and newline
   (written with an escape such as "\e") is reported and NULL. */
const char *pol_scalar(pol_ctx_t *c, struct fy_node *node, const char *what, pol_mark_t at);

/* A scalar that passes sbi_name_valid; `noun` says what it names. */
const char *pol_name(pol_ctx_t *c, struct fy_node *node, const char *what, const char *noun,
                     pol_mark_t at);

/* A scalar that passes sbi_agency_valid and, with a trust store, has an
   unrevoked certificate valid now (a missing one is reported but the id
   returned). */
const char *pol_agency(pol_ctx_t *c, struct fy_node *node, const char *what, pol_mark_t at);

typedef struct {
    const char **items; /* copies in the policy's arena */
    pol_mark_t *marks;  /* where each item is */
    size_t count;
} pol_list_t;

typedef struct {
    const char *noun; /* "purpose", "field", "agency" */
    bool agencies;    /* items are agency ids, else names */
    size_t min, max;  /* number of items */
} pol_list_spec_t;

/* A list of distinct names or agency ids. Items that are wrong are
   reported and left out; returns false when anything was wrong. */
bool pol_list(pol_ctx_t *c, struct fy_node *node, const char *key, const pol_list_spec_t *spec,
              pol_mark_t at, pol_list_t *out);

#endif
