/*  internal.h - what the files of the policy module share. Never included
    outside policy/.

    A policy owns one arena that holds every string, array and record it
    hands out, so that a loaded policy is freed in one go and its pointers
    stay valid for its whole life. Loading goes through a loader that keeps
    each file's YAML document alive between the passes (datasets and topics
    first, then rules, which refer to datasets declared in any file).
*/
#ifndef POL_INTERNAL_H_INCLUDED
#define POL_INTERNAL_H_INCLUDED

#include "policy.h"

#define POL_FILES_MAX 256     /* files in a directory or a bundle */
#define POL_FILE_NAME_MAX 255 /* a file name in a bundle */
#define POL_BUNDLE_MAX (SBI_FRAME_MAX - 64 * 1024) /* the files, packed: one envelope's payload,
                                                      with room for its header */
#define POL_ERRORS_MAX 1000   /* errors reported before giving up */

/* ------------------------------------------------------------- arena */

typedef struct pol_block_t pol_block_t;
typedef struct {
    pol_block_t *head;
} pol_arena_t;

/* Zeroed memory that lives as long as the arena; NULL when out of memory. */
void *pol_alloc(pol_arena_t *arena, size_t size);

/* A NUL-terminated copy of `size` bytes of `data`. */
char *pol_memdup(pol_arena_t *arena, const void *data, size_t size);
char *pol_strdup(pol_arena_t *arena, const char *text);
void pol_arena_clear(pol_arena_t *arena);

/* A growable array of pointers (malloc'd, not in the arena). */
typedef struct {
    void **items;
    size_t count, capacity;
} pol_vec_t;

int pol_vec_push(pol_vec_t *self, void *item) SBI_UNUSED_RESULT;
void pol_vec_clear(pol_vec_t *self);

/* A read-only hash table of string keys, frozen from a zhashx once loading
   is done (see table.c for why). Keys and slots live in the arena. */
typedef struct {
    const char **keys;
    void **values;
    size_t mask; /* slots - 1; slots are a power of two */
} pol_table_t;

int pol_table_freeze(pol_table_t *self, pol_arena_t *arena, zhashx_t *from) SBI_UNUSED_RESULT;

/* The value under `key`, or NULL. Reads only. */
void *pol_table_lookup(const pol_table_t *self, const char *key);

/* ------------------------------------------------------------- model */

typedef struct {
    int line, column; /* 1-based; 0 when unknown */
} pol_mark_t;

typedef struct {
    sbi_dataset_t pub;
    size_t file; /* index into the loader's files */
    pol_mark_t at;
    zhashx_t *field_set; /* field name -> the name itself */
} pol_dataset_t;

typedef struct {
    sbi_rule_t pub;
    size_t file;
    pol_mark_t at;
} pol_rule_t;

typedef struct {
    sbi_topic_t pub;
    size_t file;
    pol_mark_t at;
} pol_topic_t;

/* The rules of one consumer x dataset pair, in load order. */
typedef struct {
    const pol_rule_t **rules;
    size_t count;
} pol_group_t;

struct sbi_policy_t {
    pol_arena_t arena;
    uint8_t version[SBI_HASH_SIZE];
    Sharebus__PolicyBundle bundle;
    pol_vec_t datasets, rules, topics;
    /* While loading; destroyed once the policy is frozen: */
    zhashx_t *dataset_index; /* id -> pol_dataset_t */
    zhashx_t *topic_index;   /* id -> pol_topic_t */
    zhashx_t *rule_index;    /* id -> pol_rule_t */
    zhashx_t *groups;        /* "consumer dataset" -> pol_group_t */
    /* Once loaded, what every getter and decision reads: */
    pol_table_t dataset_table, topic_table, rule_table, group_table;
};

/* The lookup key of a consumer x dataset group, into `buf` (at least
   POL_GROUP_KEY_SIZE). False when either part is too long to be valid. */
#define POL_GROUP_KEY_SIZE (SBI_AGENCY_MAX + 1 + SBI_NAME_MAX + 1)
bool pol_group_key(const char *consumer, const char *dataset, char *buf);

/* ------------------------------------------------------------ loading */

typedef struct {
    const char *name;    /* plain file name */
    const char *content; /* NUL-terminated (the NUL not counted);
                            NULL when it could not be read */
    size_t size;
} pol_file_t;

typedef struct {
    sbi_policy_t *policy;
    sbi_trust_t *trust;
    const char *dir;   /* prefix of file names in errors, or NULL */
    pol_file_t *files; /* in name order */
    size_t n_files;
    void *yaml;       /* parse.c's per-file documents */
    pol_vec_t errors; /* pol_error_t, until they are sorted */
    bool too_many;    /* stopped recording at POL_ERRORS_MAX */
} pol_loader_t;

#define POL_NO_FILE ((size_t)-1)

/* Records "file:line:column: message" (or "dir: message" for POL_NO_FILE). */
void pol_error(pol_loader_t *ld, size_t file, pol_mark_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Where something was declared, as "path:line:column", for messages that
   name a second place. */
const char *pol_where(pol_loader_t *ld, size_t file, pol_mark_t at, char *buf, size_t size);

/* Pass 1: parses file `file`, checks its version and reads its datasets and
   topics. Keeps the document for pass 2. */
void pol_parse_declarations(pol_loader_t *ld, size_t file);

/* Pass 2: reads the rules of file `file`, checking them against the datasets
   of every file, then frees the document. */
void pol_parse_rules(pol_loader_t *ld, size_t file);

/* Frees whatever documents are still held. */
void pol_parse_cleanup(pol_loader_t *ld);

/* Builds the consumer x dataset index and reports overlapping rules. */
void pol_index_rules(pol_loader_t *ld);

#endif
