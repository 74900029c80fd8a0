/*  policy.c - a policy's lifecycle: gathering its files from a directory or
    a bundle, loading them in name order, the version hash, the bundle, and
    the getters. YAML is read in parse.c; rules are indexed and evaluated
    in decide.c. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- arena */

#define S_BLOCK_SIZE 65536

struct pol_block_t {
    pol_block_t *next;
    size_t used, size;
    max_align_t data[];
};

void *pol_alloc(pol_arena_t *arena, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    pol_block_t *block = arena->head;
    if (!block || block->size - block->used < size) {
        size_t data_size = size > S_BLOCK_SIZE / 4 ? size : S_BLOCK_SIZE;
        block = calloc(1, sizeof *block + data_size);
        if (!block)
            return NULL;
        block->size = data_size;
        if (arena->head && size > S_BLOCK_SIZE / 4) {
            /* A big allocation gets its own block behind the current one,
               so the space left in the current block is not wasted. */
            block->next = arena->head->next;
            arena->head->next = block;
        } else {
            block->next = arena->head;
            arena->head = block;
        }
    }
    void *memory = (char *)block->data + block->used;
    block->used += size;
    return memory;
}

char *pol_memdup(pol_arena_t *arena, const void *data, size_t size)
{
    char *copy = size < SIZE_MAX ? pol_alloc(arena, size + 1) : NULL;
    if (copy && size)
        memcpy(copy, data, size);
    return copy;
}

char *pol_strdup(pol_arena_t *arena, const char *text)
{
    return text ? pol_memdup(arena, text, strlen(text)) : NULL;
}

void pol_arena_clear(pol_arena_t *arena)
{
    while (arena->head) {
        pol_block_t *next = arena->head->next;
        free(arena->head);
        arena->head = next;
    }
}

int pol_vec_push(pol_vec_t *self, void *item)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 16;
        void **items = realloc(self->items, capacity * sizeof *items);
        if (!items)
            return SB_ENOMEM;
        self->items = items;
        self->capacity = capacity;
    }
    self->items[self->count++] = item;
    return SB_OK;
}

void pol_vec_clear(pol_vec_t *self)
{
    free(self->items);
    *self = (pol_vec_t){0};
}

/* ------------------------------------------------------------ errors */

typedef struct {
    size_t file;
    pol_mark_t at;
    size_t seq;
    char text[];
} s_error_t;

static const char *s_display(pol_loader_t *ld, size_t file, char *buf, size_t size)
{
    if (file == POL_NO_FILE || file >= ld->n_files) {
        snprintf(buf, size, "%s", ld->dir ? ld->dir : "policy bundle");
        return buf;
    }
    const char *dir = ld->dir;
    size_t len = dir ? strlen(dir) : 0;
    if (!dir)
        snprintf(buf, size, "%s", ld->files[file].name);
    else
        snprintf(buf, size, "%.*s/%s", (int)(len && dir[len - 1] == '/' ? len - 1 : len), dir,
                 ld->files[file].name);
    return buf;
}

const char *pol_where(pol_loader_t *ld, size_t file, pol_mark_t at, char *buf, size_t size)
{
    char path[4200];
    snprintf(buf, size, "%s:%d:%d", s_display(ld, file, path, sizeof path), at.line, at.column);
    return buf;
}

/* Control characters from a hostile file never reach a terminal. */
static void s_sanitize(char *text)
{
    unsigned char *c = (unsigned char *)text;
    for (; *c; c++)
        if (*c < ' ' || *c == 0x7f)
            *c = '?';
    /* A message cut at its buffer's end must not end inside a character. */
    unsigned char *lead = c;
    while (lead > (unsigned char *)text && c - lead < 4 && (lead[-1] & 0xc0) == 0x80)
        lead--;
    if (lead > (unsigned char *)text && lead[-1] >= 0xc0) {
        size_t need = lead[-1] >= 0xf0 ? 4 : lead[-1] >= 0xe0 ? 3 : 2;
        if ((size_t)(c - lead) + 1 < need)
            lead[-1] = 0;
    }
}

void pol_error(pol_loader_t *ld, size_t file, pol_mark_t at, const char *fmt, ...)
{
    if (ld->errors.count >= POL_ERRORS_MAX) {
        ld->too_many = true;
        return;
    }
    char message[1024], prefix[4300];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    if (file == POL_NO_FILE)
        s_display(ld, file, prefix, sizeof prefix);
    else
        pol_where(ld, file, at, prefix, sizeof prefix);
    size_t size = strlen(prefix) + 2 + strlen(message) + 1;
    s_error_t *error = malloc(sizeof *error + size);
    if (!error)
        return;
    error->file = file;
    error->at = at;
    error->seq = ld->errors.count;
    snprintf(error->text, size, "%s: %s", prefix, message);
    s_sanitize(error->text);
    if (pol_vec_push(&ld->errors, error) != SB_OK)
        free(error);
}

static int s_error_order(const void *a, const void *b)
{
    const s_error_t *x = *(s_error_t *const *)a, *y = *(s_error_t *const *)b;
    size_t xf = x->file + 1, yf = y->file + 1; /* POL_NO_FILE first */
    if (xf != yf)
        return xf < yf ? -1 : 1;
    if (x->at.line != y->at.line)
        return x->at.line < y->at.line ? -1 : 1;
    if (x->at.column != y->at.column)
        return x->at.column < y->at.column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the errors, in file and line order, to the caller's list. */
static void s_errors_flush(pol_loader_t *ld, zlistx_t *errors)
{
    if (ld->errors.count)
        qsort(ld->errors.items, ld->errors.count, sizeof(void *), s_error_order);
    for (size_t i = 0; i < ld->errors.count; i++) {
        s_error_t *error = ld->errors.items[i];
        char *text = errors ? strdup(error->text) : NULL;
        if (text && !zlistx_add_end(errors, text))
            free(text);
        free(error);
    }
    pol_vec_clear(&ld->errors);
    if (errors && ld->too_many) {
        char path[4200], *text = malloc(4400);
        if (text)
            snprintf(text, 4400, "%s: too many errors; stopped after %d",
                     s_display(ld, POL_NO_FILE, path, sizeof path), POL_ERRORS_MAX);
        if (text && !zlistx_add_end(errors, text))
            free(text);
    }
}

/* ------------------------------------------------------------- loading */

static zhashx_t *s_index_new(void)
{
    zhashx_t *index = zhashx_new();
    /* Keys are ids held in the arena. */
    zhashx_set_key_duplicator(index, NULL);
    zhashx_set_key_destructor(index, NULL);
    return index;
}

static sbi_policy_t *s_new(void)
{
    sbi_policy_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dataset_index = s_index_new();
    self->topic_index = s_index_new();
    self->rule_index = s_index_new();
    self->groups = zhashx_new(); /* keys built per pair: duplicated */
    sharebus__policy_bundle__init(&self->bundle);
    return self;
}

void sbi_policy_destroy(sbi_policy_t **self_p)
{
    assert(self_p);
    sbi_policy_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->datasets.count; i++)
        zhashx_destroy(&((pol_dataset_t *)self->datasets.items[i])->field_set);
    zhashx_destroy(&self->dataset_index);
    zhashx_destroy(&self->topic_index);
    zhashx_destroy(&self->rule_index);
    zhashx_destroy(&self->groups);
    pol_vec_clear(&self->datasets);
    pol_vec_clear(&self->rules);
    pol_vec_clear(&self->topics);
    pol_arena_clear(&self->arena);
    free(self);
    *self_p = NULL;
}

static void s_version(sbi_policy_t *self, const pol_file_t *files, size_t n_files)
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, SBI_HASH_SIZE);
    for (size_t i = 0; i < n_files; i++) {
        uint8_t length[8];
        for (int b = 0; b < 8; b++)
            length[b] = (uint8_t)((uint64_t)files[i].size >> (56 - 8 * b));
        crypto_generichash_update(&state, (const uint8_t *)files[i].name,
                                  strlen(files[i].name) + 1);
        crypto_generichash_update(&state, length, sizeof length);
        crypto_generichash_update(&state, (const uint8_t *)files[i].content, files[i].size);
    }
    crypto_generichash_final(&state, self->version, SBI_HASH_SIZE);
}

/* The bundle points at the files, which live in the arena. */
static int s_bundle(sbi_policy_t *self, const pol_file_t *files, size_t n_files)
{
    Sharebus__PolicyFile **list = pol_alloc(&self->arena, n_files * sizeof *list + 1);
    if (!list)
        return SB_ENOMEM;
    for (size_t i = 0; i < n_files; i++) {
        list[i] = pol_alloc(&self->arena, sizeof **list);
        if (!list[i])
            return SB_ENOMEM;
        sharebus__policy_file__init(list[i]);
        list[i]->name = (char *)files[i].name;
        list[i]->content.data = (uint8_t *)files[i].content;
        list[i]->content.len = files[i].size;
    }
    self->bundle.version.data = self->version;
    self->bundle.version.len = SBI_HASH_SIZE;
    self->bundle.files = list;
    self->bundle.n_files = n_files;
    return SB_OK;
}

/* Swaps the loading indexes for read-only tables (see table.c). */
static int s_freeze(sbi_policy_t *self)
{
    pol_arena_t *arena = &self->arena;
    int rc = pol_table_freeze(&self->dataset_table, arena, self->dataset_index);
    if (rc == SB_OK)
        rc = pol_table_freeze(&self->topic_table, arena, self->topic_index);
    if (rc == SB_OK)
        rc = pol_table_freeze(&self->rule_table, arena, self->rule_index);
    if (rc == SB_OK)
        rc = pol_table_freeze(&self->group_table, arena, self->groups);
    for (size_t i = 0; i < self->datasets.count; i++)
        zhashx_destroy(&((pol_dataset_t *)self->datasets.items[i])->field_set);
    zhashx_destroy(&self->dataset_index);
    zhashx_destroy(&self->topic_index);
    zhashx_destroy(&self->rule_index);
    zhashx_destroy(&self->groups);
    return rc;
}

/* Loads the files gathered in `ld` (name-sorted, in the policy's arena). */
static sbi_policy_t *s_load(pol_loader_t *ld, zlistx_t *errors)
{
    for (size_t i = 0; i < ld->n_files; i++)
        pol_parse_declarations(ld, i);
    for (size_t i = 0; i < ld->n_files; i++)
        pol_parse_rules(ld, i);
    pol_parse_cleanup(ld);
    pol_index_rules(ld);
    s_version(ld->policy, ld->files, ld->n_files);
    if (s_bundle(ld->policy, ld->files, ld->n_files) != SB_OK || s_freeze(ld->policy) != SB_OK)
        pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "out of memory");
    else if (sharebus__policy_bundle__get_packed_size(&ld->policy->bundle) > POL_BUNDLE_MAX)
        /* The broker sends the files to every agent in one message. */
        pol_error(ld, POL_NO_FILE, (pol_mark_t){0},
                  "the policy files come to %zu bytes: more than the %d that one message to "
                  "the agents carries", sharebus__policy_bundle__get_packed_size(&ld->policy->bundle),
                  POL_BUNDLE_MAX);
    bool failed = ld->errors.count > 0 || ld->too_many;
    s_errors_flush(ld, errors);
    if (failed)
        sbi_policy_destroy(&ld->policy);
    return ld->policy;
}

static int s_by_name(const void *a, const void *b)
{
    return strcmp(((const pol_file_t *)a)->name, ((const pol_file_t *)b)->name);
}

static bool s_is_policy_name(const char *name)
{
    size_t len = strlen(name);
    if (name[0] == '.')
        return false; /* hidden files, editors' lock files */
    return (len > 5 && strcmp(name + len - 5, ".yaml") == 0) ||
           (len > 4 && strcmp(name + len - 4, ".yml") == 0);
}

/* Lists the policy files of `dir` into ld->files (names only, sorted). */
static int s_list_dir(pol_loader_t *ld, const char *dir)
{
    DIR *handle = opendir(dir);
    if (!handle) {
        pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "cannot read the directory: %s",
                  strerror(errno));
        return SB_EIO;
    }
    pol_arena_t *arena = &ld->policy->arena;
    ld->files = pol_alloc(arena, POL_FILES_MAX * sizeof *ld->files);
    struct dirent *entry;
    int rc = ld->files ? SB_OK : SB_ENOMEM;
    while (rc == SB_OK && (entry = readdir(handle))) {
        if (!s_is_policy_name(entry->d_name))
            continue;
        if (ld->n_files == POL_FILES_MAX) {
            pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "more than %d policy files", POL_FILES_MAX);
            rc = SB_ETOOBIG;
            break;
        }
        pol_file_t *file = &ld->files[ld->n_files++];
        file->name = pol_strdup(arena, entry->d_name);
        file->content = NULL; /* until it is read */
        rc = file->name ? SB_OK : SB_ENOMEM;
    }
    closedir(handle);
    if (rc == SB_OK && ld->n_files == 0)
        pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "no policy files (*.yaml, *.yml)");
    if (ld->n_files)
        qsort(ld->files, ld->n_files, sizeof *ld->files, s_by_name);
    return rc;
}

/* True when `name` holds no control character: what the bundle the agents
   receive allows (see s_bundle_file). */
static bool s_name_printable(const char *name)
{
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (*c < ' ' || *c == 0x7f)
            return false;
    return true;
}

static void s_read_file(pol_loader_t *ld, size_t index, const char *dir)
{
    pol_file_t *file = &ld->files[index];
    if (!s_name_printable(file->name)) {
        /* Every agent would refuse the bundle: the broker must too. */
        pol_error(ld, index, (pol_mark_t){1, 1},
                  "the file name holds a control character: rename the file");
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file->name);
    char *data = NULL;
    size_t size = 0;
    errno = 0;
    int rc = sbi_file_read(path, SBI_FILE_MAX, &data, &size);
    pol_mark_t start = {1, 1};
    if (rc == SB_ETOOBIG)
        pol_error(ld, index, start, "file is larger than %d bytes", SBI_FILE_MAX);
    else if (rc != SB_OK)
        pol_error(ld, index, start, "cannot read the file: %s",
                  errno == EINVAL ? "not a regular file" : strerror(errno));
    if (rc != SB_OK)
        return;
    file->content = pol_memdup(&ld->policy->arena, data, size);
    file->size = file->content ? size : 0;
    if (!file->content)
        pol_error(ld, index, start, "out of memory");
    free(data);
}

sbi_policy_t *sbi_policy_load(const char *dir, sbi_trust_t *trust, zlistx_t *errors)
{
    assert(dir);
    pol_loader_t ld = {.policy = s_new(), .trust = trust, .dir = dir};
    if (!ld.policy)
        return NULL;
    if (s_list_dir(&ld, dir) != SB_OK || ld.n_files == 0) {
        s_errors_flush(&ld, errors);
        sbi_policy_destroy(&ld.policy);
        return NULL;
    }
    for (size_t i = 0; i < ld.n_files; i++)
        s_read_file(&ld, i, dir);
    return s_load(&ld, errors);
}

/* Copies one bundle file into the arena after checking its name and size. */
static bool s_bundle_file(pol_loader_t *ld, const Sharebus__PolicyFile *in, pol_file_t *out)
{
    pol_mark_t none = {0};
    const char *name = in ? in->name : NULL;
    if (!name || !s_name_printable(name) || strlen(name) > POL_FILE_NAME_MAX || strchr(name, '/') ||
        !s_is_policy_name(name)) {
        pol_error(ld, POL_NO_FILE, none, "file name '%.64s' is not a plain *.yaml or *.yml name",
                  name ? name : "");
        return false;
    }
    if (in->content.len > SBI_FILE_MAX || (in->content.len && !in->content.data)) {
        pol_error(ld, POL_NO_FILE, none, "%s is larger than %d bytes", name, SBI_FILE_MAX);
        return false;
    }
    out->name = pol_strdup(&ld->policy->arena, name);
    out->content = pol_memdup(&ld->policy->arena, in->content.data, in->content.len);
    out->size = in->content.len;
    if (!out->name || !out->content) {
        pol_error(ld, POL_NO_FILE, none, "out of memory");
        return false;
    }
    return true;
}

static bool s_bundle_files(pol_loader_t *ld, const Sharebus__PolicyBundle *bundle)
{
    pol_mark_t none = {0};
    if (!bundle || bundle->n_files == 0 || bundle->n_files > POL_FILES_MAX) {
        pol_error(ld, POL_NO_FILE, none, "a bundle holds 1 to %d files", POL_FILES_MAX);
        return false;
    }
    ld->files = pol_alloc(&ld->policy->arena, bundle->n_files * sizeof *ld->files);
    if (!ld->files)
        return false;
    bool ok = true;
    for (size_t i = 0; i < bundle->n_files; i++)
        if (s_bundle_file(ld, bundle->files[i], &ld->files[ld->n_files]))
            ld->n_files++;
        else
            ok = false;
    if (ld->n_files)
        qsort(ld->files, ld->n_files, sizeof *ld->files, s_by_name);
    for (size_t i = 1; i < ld->n_files; i++)
        if (strcmp(ld->files[i - 1].name, ld->files[i].name) == 0) {
            pol_error(ld, POL_NO_FILE, none, "%s appears twice", ld->files[i].name);
            ok = false;
        }
    return ok;
}

sbi_policy_t *sbi_policy_load_bundle(const Sharebus__PolicyBundle *bundle, sbi_trust_t *trust,
                                     zlistx_t *errors)
{
    pol_loader_t ld = {.policy = s_new(), .trust = trust};
    if (!ld.policy)
        return NULL;
    if (!s_bundle_files(&ld, bundle)) {
        s_errors_flush(&ld, errors);
        sbi_policy_destroy(&ld.policy);
        return NULL;
    }
    sbi_policy_t *self = s_load(&ld, errors);
    if (self && bundle->version.len &&
        (bundle->version.len != SBI_HASH_SIZE ||
         sodium_memcmp(bundle->version.data, self->version, SBI_HASH_SIZE) != 0)) {
        if (errors)
            zlistx_add_end(errors, strdup("policy bundle: its version does not match its files"));
        sbi_policy_destroy(&self);
    }
    return self;
}

/* ------------------------------------------------------------- getters */

const uint8_t *sbi_policy_version(sbi_policy_t *self)
{
    assert(self);
    return self->version;
}

const Sharebus__PolicyBundle *sbi_policy_bundle(sbi_policy_t *self)
{
    assert(self);
    return &self->bundle;
}

const sbi_dataset_t *sbi_policy_dataset(sbi_policy_t *self, const char *id)
{
    assert(self);
    pol_dataset_t *dataset = id ? pol_table_lookup(&self->dataset_table, id) : NULL;
    return dataset ? &dataset->pub : NULL;
}

const sbi_topic_t *sbi_policy_topic(sbi_policy_t *self, const char *id)
{
    assert(self);
    pol_topic_t *topic = id ? pol_table_lookup(&self->topic_table, id) : NULL;
    return topic ? &topic->pub : NULL;
}

const sbi_rule_t *sbi_policy_rule(sbi_policy_t *self, const char *id)
{
    assert(self);
    pol_rule_t *rule = id ? pol_table_lookup(&self->rule_table, id) : NULL;
    return rule ? &rule->pub : NULL;
}

size_t sbi_policy_rule_count(sbi_policy_t *self)
{
    assert(self);
    return self->rules.count;
}

const sbi_rule_t *sbi_policy_rule_at(sbi_policy_t *self, size_t index)
{
    assert(self);
    return index < self->rules.count ? &((pol_rule_t *)self->rules.items[index])->pub : NULL;
}

size_t sbi_policy_dataset_count(sbi_policy_t *self)
{
    assert(self);
    return self->datasets.count;
}

const sbi_dataset_t *sbi_policy_dataset_at(sbi_policy_t *self, size_t index)
{
    assert(self);
    return index < self->datasets.count ? &((pol_dataset_t *)self->datasets.items[index])->pub
                                        : NULL;
}

size_t sbi_policy_topic_count(sbi_policy_t *self)
{
    assert(self);
    return self->topics.count;
}

const sbi_topic_t *sbi_policy_topic_at(sbi_policy_t *self, size_t index)
{
    assert(self);
    return index < self->topics.count ? &((pol_topic_t *)self->topics.items[index])->pub : NULL;
}
