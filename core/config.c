/*  config.c - daemon configuration files, parsed with libfyaml. */
#include "config.h"
#include "yaml_guard.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_SETTINGS_MAX 64
#define S_FILE_MAX (1 << 16)

typedef struct {
    char *key;
    char *value;
    size_t line;
} s_setting_t;

struct sbi_config_t {
    char *path;
    s_setting_t settings[S_SETTINGS_MAX];
    size_t count;
};

static void s_diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

/* 1-based line of `node`, or 1. */
static size_t s_line(struct fy_node *node)
{
    struct fy_token *token = node ? fy_node_get_scalar_token(node) : NULL;
    const struct fy_mark *mark = token ? fy_token_start_mark(token) : NULL;
    if (!mark && node) {
        /* A collection: where its first key or item is. */
        void *iter = NULL;
        if (fy_node_is_mapping(node)) {
            struct fy_node_pair *pair = fy_node_mapping_iterate(node, &iter);
            return pair ? s_line(fy_node_pair_key(pair)) : 1;
        }
        if (fy_node_is_sequence(node)) {
            struct fy_node *item = fy_node_sequence_iterate(node, &iter);
            return item ? s_line(item) : 1;
        }
    }
    return mark && mark->line >= 0 ? (size_t) mark->line + 1 : 1;
}

static bool s_is_empty(struct fy_node *node)
{
    if (!node)
        return true;
    if (!fy_node_is_scalar(node) || fy_node_get_style(node) != FYNS_PLAIN)
        return false;
    size_t len = 0;
    const char *text = fy_node_get_scalar(node, &len);
    return !text || len == 0 || (len == 1 && text[0] == '~') ||
           (len == 4 && strncasecmp(text, "null", 4) == 0);
}

/* A copy of a scalar's text, without NUL bytes inside; NULL for anything
   else. The caller frees it. */
static char *s_text(struct fy_node *node)
{
    if (!node || !fy_node_is_scalar(node) || fy_node_is_alias(node))
        return NULL;
    size_t len = 0;
    const char *text = fy_node_get_scalar(node, &len);
    if (!text || memchr(text, 0, len))
        return NULL;
    char *copy = strndup(text, len);
    assert(copy);
    return copy;
}

static const char *s_describe(struct fy_node *node)
{
    if (s_is_empty(node))
        return "nothing";
    if (fy_node_is_alias(node))
        return "an alias";
    return fy_node_is_mapping(node) ? "a mapping" : fy_node_is_sequence(node) ? "a list" : "text";
}

/* libfyaml's first error, as PATH:LINE: message. True when there was one. */
static bool s_diag_error(struct fy_diag *diag, const char *path, char *err, size_t size)
{
    void *iter = NULL;
    struct fy_diag_error *error;
    while ((error = fy_diag_errors_iterate(diag, &iter)))
        if (error->type >= FYET_ERROR) {
            snprintf(err, size, "%s:%d: %s", path, error->line > 0 ? error->line : 1,
                     error->msg ? error->msg : "not valid YAML");
            return true;
        }
    if (fy_diag_got_error(diag)) {
        snprintf(err, size, "%s:1: not valid YAML", path);
        return true;
    }
    return false;
}

/* libfyaml 0.7.12 (Debian 12) crashes on some explicit keys; a setting never needs one. */
static bool s_no_explicit_keys(const char *path, const char *data, size_t size, char *err,
                               size_t err_size)
{
    size_t line, column;
    if (!sbi_yaml_explicit_key(data, size, &line, &column))
        return true;
    snprintf(err, err_size, "%s:%zu: '?' (an explicit YAML key) has no place in a "
             "configuration file: write key: value", path, line);
    return false;
}

/* Reads the settings of `root` (a mapping) into `self`. */
static int s_read(sbi_config_t *self, struct fy_node *root, char *err, size_t size)
{
    if (!fy_node_is_mapping(root)) {
        snprintf(err, size, "%s:%zu: a configuration file is a mapping of 'key: value' "
                 "settings, not %s", self->path, s_line(root), s_describe(root));
        return -1;
    }
    void *iter = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(root, &iter))) {
        struct fy_node *key = fy_node_pair_key(pair), *value = fy_node_pair_value(pair);
        size_t line = s_line(key);
        char *name = s_text(key), *text = s_text(value);
        int rc = 0;
        if (!name || s_is_empty(key)) {
            snprintf(err, size, "%s:%zu: a setting's name must be plain text, not %s",
                     self->path, line, s_describe(key));
            rc = -1;
        }
        else if (s_is_empty(value) || !text) {
            snprintf(err, size, "%s:%zu: '%s' needs a single value, not %s", self->path, line,
                     name, s_describe(value));
            rc = -1;
        }
        else if (self->count == S_SETTINGS_MAX) {
            snprintf(err, size, "%s:%zu: more than %d settings", self->path, line,
                     S_SETTINGS_MAX);
            rc = -1;
        }
        if (rc != 0) {
            free(name);
            free(text);
            return -1;
        }
        s_setting_t *s = &self->settings[self->count++];
        s->key = name;
        s->value = text;
        s->line = line;
    }
    return 0;
}

sbi_config_t *sbi_config_load(const char *path, char *err, size_t err_size)
{
    char *data = NULL;
    size_t size = 0;
    int rc = sbi_file_read(path, S_FILE_MAX, &data, &size);
    if (rc != SB_OK) {
        snprintf(err, err_size, "%s: %s", path,
                 rc == SB_ETOOBIG ? "larger than 64 KiB" : strerror(errno));
        return NULL;
    }
    sbi_config_t *self = sbi_config_parse(path, data, size, err, err_size);
    free(data);
    return self;
}

sbi_config_t *sbi_config_parse(const char *path, const char *data, size_t size, char *err,
                               size_t err_size)
{
    if (size > S_FILE_MAX) {
        snprintf(err, err_size, "%s: larger than 64 KiB", path);
        return NULL;
    }
    size_t line, column;
    unsigned byte;
    if (!sbi_text_valid(data, size, &line, &column, &byte)) {
        snprintf(err, err_size, "%s:%zu: not UTF-8 text: byte 0x%02x is not allowed here", path,
                 line, byte);
        return NULL;
    }
    if (!s_no_explicit_keys(path, data, size, err, err_size))
        return NULL;
    sbi_config_t *self = calloc(1, sizeof *self);
    assert(self);
    self->path = strdup(path);
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = s_diag_discard;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    assert(diag);
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2, .diag = diag};
    struct fy_parser *parser = fy_parser_create(&cfg);
    assert(parser);
    struct fy_document *doc = NULL;
    int rc = -1;
    if (fy_parser_set_string(parser, data, size) != 0)
        snprintf(err, err_size, "%s: cannot be parsed", path);
    else {
        doc = fy_parse_load_document(parser);
        /* Only after a clean first document: libfyaml does not survive
           parsing on past some errors. Empty ones (a trailing "---") are
           skipped. */
        size_t extra_line = 0, extra_column = 0;
        struct fy_document *extra =
            doc && !fy_diag_got_error(diag)
                ? sbi_yaml_next_document(parser, diag, &extra_line, &extra_column)
                : NULL;
        if (s_diag_error(diag, path, err, err_size))
            ;
        else if (extra)
            snprintf(err, err_size, "%s:%zu: a second YAML document: a configuration file "
                     "holds one", path, extra_line);
        else if (sbi_yaml_misread_quotes(doc, data, size, &line, &column))
            snprintf(err, err_size, "%s:%zu: two '' in a row in a single-quoted value, which "
                     "this system's YAML library misreads: write the value in double quotes",
                     path, line);
        else if (!doc || !fy_document_root(doc) || s_is_empty(fy_document_root(doc)))
            rc = 0; /* nothing set */
        else
            rc = s_read(self, fy_document_root(doc), err, err_size);
        if (extra)
            fy_parse_document_destroy(parser, extra);
    }
    if (doc)
        fy_parse_document_destroy(parser, doc);
    fy_parser_destroy(parser);
    fy_diag_destroy(diag);
    if (rc != 0)
        sbi_config_destroy(&self);
    return self;
}

void sbi_config_destroy(sbi_config_t **self_p)
{
    sbi_config_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++) {
        free(self->settings[i].key);
        free(self->settings[i].value);
    }
    free(self->path);
    free(self);
    *self_p = NULL;
}

size_t sbi_config_size(sbi_config_t *self)
{
    return self->count;
}

const char *sbi_config_key(sbi_config_t *self, size_t index)
{
    return index < self->count ? self->settings[index].key : NULL;
}

const char *sbi_config_value(sbi_config_t *self, size_t index)
{
    return index < self->count ? self->settings[index].value : NULL;
}

size_t sbi_config_line(sbi_config_t *self, size_t index)
{
    return index < self->count ? self->settings[index].line : 0;
}

static bool s_excluded(const char *const *excluded, const char *name)
{
    for (; excluded && *excluded; excluded++)
        if (strcmp(*excluded, name) == 0)
            return true;
    return false;
}

/* "a, b, c": the settings a file may hold. */
static void s_known(const struct option *options, const char *const *excluded, char *buf,
                    size_t size)
{
    size_t used = 0;
    buf[0] = 0;
    for (; options->name && used < size; options++)
        if (!s_excluded(excluded, options->name))
            used += (size_t) snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
                                      options->name);
}

int sbi_config_apply(sbi_config_t *self, const struct option *options,
                     const char *const *excluded, sbi_config_option_fn *fn, void *arg,
                     char *err, size_t err_size)
{
    for (size_t i = 0; i < self->count; i++) {
        const s_setting_t *s = &self->settings[i];
        const struct option *o = options;
        while (o->name && strcmp(o->name, s->key) != 0)
            o++;
        if (!o->name || s_excluded(excluded, o->name)) {
            char known[512];
            s_known(options, excluded, known, sizeof known);
            snprintf(err, err_size, "%s:%zu: unknown setting '%s' (settings: %s)", self->path,
                     s->line, s->key, known);
            return -1;
        }
        const char *value = s->value;
        char reason[300] = "";
        int rc = 0;
        if (o->has_arg == no_argument) {
            bool on = !strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on");
            bool off = !strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off");
            if (!on && !off) {
                snprintf(reason, sizeof reason, "true or false");
                rc = -1;
            }
            else if (on)
                rc = fn(arg, o->val, NULL, reason, sizeof reason);
        }
        else
            rc = fn(arg, o->val, value, reason, sizeof reason);
        if (rc != 0) {
            snprintf(err, err_size, "%s:%zu: %s: %s", self->path, s->line, s->key, reason);
            return -1;
        }
    }
    return 0;
}

const char *sbi_config_arg(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0)
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}
