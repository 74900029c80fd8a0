/*  yaml.c - libfyaml documents and the typed readers of policy values.
    libfyaml parses; its diagnostics are collected (never printed) and
    reported as file:line:column like every other error. */
#include "yaml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yaml_guard.h"

struct pol_yaml_t {
    struct fy_diag *diag;
    struct fy_parser *parser;
    struct fy_document *doc;
};

static void s_diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
}

/* Reports libfyaml's errors; true when there was any. */
static bool s_diag_report(pol_ctx_t *c, struct fy_diag *diag)
{
    bool any = false;
    void *iter = NULL;
    struct fy_diag_error *error;
    while ((error = fy_diag_errors_iterate(diag, &iter))) {
        if (error->type < FYET_ERROR)
            continue;
        /* These positions are already 1-based. */
        pol_mark_t at = {error->line > 0 ? error->line : 1, error->column > 0 ? error->column : 1};
        pol_err(c, at, "%s", error->msg ? error->msg : "not valid YAML");
        any = true;
    }
    if (!any && fy_diag_got_error(diag)) {
        pol_err(c, ((pol_mark_t){1, 1}), "not valid YAML");
        any = true;
    }
    return any;
}

static struct fy_diag *s_diag_new(void)
{
    struct fy_diag_cfg cfg;
    fy_diag_cfg_default(&cfg);
    cfg.fp = NULL;
    cfg.output_fn = s_diag_discard;
    cfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&cfg);
    if (diag)
        fy_diag_set_collect_errors(diag, true);
    return diag;
}

/* A second document with content is refused, wherever it is after empty
   ones; empty ones (a trailing "---") are not. */
static bool s_single_document(pol_ctx_t *c, pol_yaml_t *self)
{
    size_t line, column;
    struct fy_document *extra = sbi_yaml_next_document(self->parser, self->diag, &line, &column);
    if (!extra)
        return true;
    pol_mark_t at = {(int) line, (int) column};
    pol_err(c, at, "a second YAML document: a policy file holds one");
    fy_parse_document_destroy(self->parser, extra);
    return false;
}

pol_yaml_t *pol_yaml_parse(pol_ctx_t *c, const pol_file_t *file)
{
    size_t line, column;
    unsigned byte;
    if (!sbi_text_valid(file->content, file->size, &line, &column, &byte)) {
        pol_err(c, ((pol_mark_t){line, column}), "not UTF-8 text: byte 0x%02x is not allowed here",
                byte);
        return NULL;
    }
    /* libfyaml 0.7.12 (Debian 12) crashes on some explicit keys ("? ?:<TAB>:"): refuse
       them all before it parses; a policy never needs one. */
    if (sbi_yaml_explicit_key(file->content, file->size, &line, &column)) {
        pol_err(c, ((pol_mark_t){(int) line, (int) column}),
                "'?' (an explicit YAML key) is not used in policy files: write key: value");
        return NULL;
    }
    pol_yaml_t *self = calloc(1, sizeof *self);
    self->diag = self ? s_diag_new() : NULL;
    struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2,
                               .diag = self ? self->diag : NULL};
    if (self && self->diag)
        self->parser = fy_parser_create(&cfg);
    if (!self || !self->parser || fy_parser_set_string(self->parser, file->content, file->size)) {
        pol_err(c, ((pol_mark_t){1, 1}), "out of memory");
        pol_yaml_destroy(&self);
        return NULL;
    }
    self->doc = fy_parse_load_document(self->parser);
    bool single = s_single_document(c, self);
    if (s_diag_report(c, self->diag) || !single)
        pol_yaml_destroy(&self);
    else if (sbi_yaml_misread_quotes(self->doc, file->content, file->size, &line, &column)) {
        pol_err(c, ((pol_mark_t){(int) line, (int) column}),
                "two '' in a row in a single-quoted value, which this system's YAML library "
                "misreads: write the value in double quotes");
        pol_yaml_destroy(&self);
    }
    else if (!self->doc || !fy_document_root(self->doc)) {
        pol_err(c, ((pol_mark_t){1, 1}), "empty file: a policy file starts with 'version: 1'");
        pol_yaml_destroy(&self);
    }
    return self;
}

struct fy_node *pol_yaml_root(pol_yaml_t *self)
{
    assert(self);
    return fy_document_root(self->doc);
}

void pol_yaml_destroy(pol_yaml_t **self_p)
{
    assert(self_p);
    pol_yaml_t *self = *self_p;
    if (!self)
        return;
    if (self->doc)
        fy_parse_document_destroy(self->parser, self->doc);
    if (self->parser)
        fy_parser_destroy(self->parser);
    if (self->diag)
        fy_diag_destroy(self->diag);
    free(self);
    *self_p = NULL;
}

/* ------------------------------------------------------------- nodes */

pol_mark_t pol_mark(struct fy_node *node, pol_mark_t fallback)
{
    void *iter = NULL;
    if (!node)
        return fallback;
    if (fy_node_is_mapping(node)) {
        struct fy_node_pair *pair = fy_node_mapping_iterate(node, &iter);
        return pair ? pol_mark(fy_node_pair_key(pair), fallback) : fallback;
    }
    if (fy_node_is_sequence(node)) {
        struct fy_node *item = fy_node_sequence_iterate(node, &iter);
        return item ? pol_mark(item, fallback) : fallback;
    }
    struct fy_token *token = fy_node_get_scalar_token(node);
    const struct fy_mark *mark = token ? fy_token_start_mark(token) : NULL;
    if (!mark || mark->line < 0 || mark->column < 0)
        return fallback;
    /* libfyaml marks a quoted scalar or an alias after its quote or '*':
       point at the value as written. */
    enum fy_node_style style = fy_node_get_style(node);
    bool opened = style == FYNS_SINGLE_QUOTED || style == FYNS_DOUBLE_QUOTED || style == FYNS_ALIAS;
    return (pol_mark_t){mark->line + 1, mark->column + (opened && mark->column > 0 ? 0 : 1)};
}

/* A key with nothing after it, or a plain null. */
static bool s_is_empty(struct fy_node *node)
{
    if (!node)
        return true;
    if (!fy_node_is_scalar(node) || fy_node_get_style(node) != FYNS_PLAIN)
        return false;
    size_t len = 0;
    const char *text = fy_node_get_scalar(node, &len);
    return !text || len == 0 || (len == 1 && text[0] == '~') ||
           (len == 4 &&
            (!memcmp(text, "null", 4) || !memcmp(text, "Null", 4) || !memcmp(text, "NULL", 4)));
}

const char *pol_describe(struct fy_node *node)
{
    if (s_is_empty(node))
        return "nothing";
    if (fy_node_is_alias(node))
        return "an alias";
    return fy_node_is_mapping(node)    ? "a mapping"
           : fy_node_is_sequence(node) ? "a list"
                                       : "a single value";
}

/* The text of a scalar without NUL bytes inside, or NULL. */
static const char *s_plain_text(struct fy_node *node)
{
    if (!node || !fy_node_is_scalar(node) || fy_node_is_alias(node))
        return NULL;
    size_t len = 0;
    const char *text = fy_node_get_scalar0(node);
    if (!fy_node_get_scalar(node, &len) || !text || strlen(text) != len)
        return NULL;
    return text;
}

pol_key_t *pol_key(pol_key_t *keys, const char *name)
{
    while (keys->name && strcmp(keys->name, name) != 0)
        keys++;
    assert(keys->name);
    return keys;
}

static const char *s_key_names(const pol_key_t *keys, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = 0;
    for (; keys->name && used < size; keys++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", keys->name);
    return buf;
}

void pol_keys(pol_ctx_t *c, struct fy_node *map, pol_key_t *keys, const char *kind, pol_mark_t at)
{
    void *iter = NULL;
    struct fy_node_pair *pair;
    char expected[256];
    while ((pair = fy_node_mapping_iterate(map, &iter))) {
        struct fy_node *key = fy_node_pair_key(pair);
        pol_mark_t key_at = pol_mark(key, at);
        const char *name = s_plain_text(key);
        pol_key_t *found = keys;
        while (name && found->name && strcmp(found->name, name) != 0)
            found++;
        if (!name)
            pol_err(c, key_at, "a key of %s must be a plain name, not %s", kind, pol_describe(key));
        else if (!found->name)
            pol_err(c, key_at, "unknown key '%s' in %s (expected %s)", name, kind,
                    s_key_names(keys, expected, sizeof expected));
        else {
            found->seen = true;
            found->value = s_is_empty(fy_node_pair_value(pair)) ? NULL : fy_node_pair_value(pair);
            found->at = key_at;
        }
    }
}

void pol_keys_required(pol_ctx_t *c, const pol_key_t *keys, const char *what, pol_mark_t at)
{
    for (; keys->name; keys++)
        if (keys->required && !keys->seen)
            pol_err(c, at, "%s is missing '%s'", what, keys->name);
}

/* ------------------------------------------------------------ values */

/* The first control character of `text` other than tab and newline (C0,
   DEL or C1), or 0. The file's bytes hold none (sbi_text_valid), but an
   escape in a double-quoted value ("\e", "\x85") writes one, and `show`
   prints values such as descriptions to a terminal. */
static unsigned s_control(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if ((*c < ' ' && *c != '\t' && *c != '\n') || *c == 0x7f)
            return *c;
        if (*c == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f)
            return c[1];
    }
    return 0;
}

const char *pol_scalar(pol_ctx_t *c, struct fy_node *node, const char *what, pol_mark_t at)
{
    if (s_is_empty(node) || fy_node_is_alias(node) || !fy_node_is_scalar(node)) {
        pol_err(c, pol_mark(node, at), "%s must be a single value, not %s", what,
                pol_describe(node));
        return NULL;
    }
    const char *text = s_plain_text(node);
    unsigned control = text ? s_control(text) : 0;
    if (!text)
        pol_err(c, pol_mark(node, at), "%s holds a NUL character", what);
    else if (control) {
        pol_err(c, pol_mark(node, at),
                "%s holds the control character U+%04X: only tab and newline may be written", what,
                control);
        return NULL;
    }
    return text;
}

const char *pol_name(pol_ctx_t *c, struct fy_node *node, const char *what, const char *noun,
                     pol_mark_t at)
{
    const char *text = pol_scalar(c, node, what, at);
    if (text && !sbi_name_valid(text)) {
        pol_err(c, pol_mark(node, at),
                "'%s' is not a valid %s (1 to 128 printable characters, no spaces)", text, noun);
        return NULL;
    }
    return text;
}

/* True when `agency` has an unrevoked certificate in `trust` that is valid
   now. The store finds its newest unrevoked one, which may have expired or
   not be valid yet (a rotation prepared ahead): then look at the others. */
static bool s_certified_now(sbi_trust_t *trust, const char *agency)
{
    uint64_t now = sbi_now_ms();
    const sbi_cert_t *cert = sbi_trust_find(trust, agency);
    if (cert && sbi_trust_check(trust, cert, now) == SB_OK)
        return true;
    for (size_t i = 0; i < sbi_trust_count(trust); i++) {
        cert = sbi_trust_at(trust, i);
        if (strcmp(cert->agency, agency) == 0 && sbi_trust_check(trust, cert, now) == SB_OK)
            return true;
    }
    return false;
}

const char *pol_agency(pol_ctx_t *c, struct fy_node *node, const char *what, pol_mark_t at)
{
    const char *text = pol_scalar(c, node, what, at);
    if (text && !sbi_agency_valid(text, false)) {
        pol_err(c, pol_mark(node, at),
                "'%s' is not a valid agency id (1 to 32 of a-z, 0-9, '.' and '-')", text);
        return NULL;
    }
    if (text && c->ld->trust && !sbi_trust_find(c->ld->trust, text))
        pol_err(c, pol_mark(node, at), "agency '%s' has no certificate in the trust store", text);
    else if (text && c->ld->trust && !s_certified_now(c->ld->trust, text))
        pol_err(c, pol_mark(node, at),
                "agency '%s' has no certificate valid now in the trust store (each has expired, "
                "or is not valid yet)",
                text);
    return text;
}

/* One item of a list: read, checked, and refused when seen before. */
static const char *s_item(pol_ctx_t *c, struct fy_node *item, const char *key,
                          const pol_list_spec_t *spec, pol_mark_t at, zhashx_t *seen)
{
    char what[160];
    snprintf(what, sizeof what, "each item of '%s'", key);
    const char *text =
        spec->agencies ? pol_agency(c, item, what, at) : pol_name(c, item, what, spec->noun, at);
    if (text && zhashx_lookup(seen, text)) {
        pol_err(c, pol_mark(item, at), "'%s' lists '%s' twice", key, text);
        return NULL;
    }
    return text;
}

bool pol_list(pol_ctx_t *c, struct fy_node *node, const char *key, const pol_list_spec_t *spec,
              pol_mark_t at, pol_list_t *out)
{
    *out = (pol_list_t){0};
    if (!fy_node_is_sequence(node) && !(spec->min == 0 && s_is_empty(node))) {
        pol_err(c, pol_mark(node, at), "'%s' must be a list, not %s", key, pol_describe(node));
        return false;
    }
    size_t n = node && fy_node_is_sequence(node) ? (size_t)fy_node_sequence_item_count(node) : 0;
    if (n < spec->min) {
        pol_err(c, pol_mark(node, at), "'%s' is empty: list at least one %s", key, spec->noun);
        return false;
    }
    if (n > spec->max) {
        pol_err(c, pol_mark(node, at), "'%s' lists more than %zu %ss", key, spec->max, spec->noun);
        return false;
    }
    pol_arena_t *arena = &c->ld->policy->arena;
    out->items = pol_alloc(arena, (n + 1) * sizeof *out->items);
    out->marks = pol_alloc(arena, (n + 1) * sizeof *out->marks);
    zhashx_t *seen = zhashx_new();
    if (!out->items || !out->marks || !seen) {
        pol_err(c, at, "out of memory");
        zhashx_destroy(&seen);
        return false;
    }
    /* Every item is read, so that every bad one is reported. */
    bool ok = true;
    void *iter = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(node, &iter))) {
        const char *text = s_item(c, item, key, spec, at, seen);
        char *copy = text ? pol_strdup(arena, text) : NULL;
        if (!copy || zhashx_insert(seen, copy, copy) != 0) {
            ok = false;
            continue;
        }
        out->marks[out->count] = pol_mark(item, at);
        out->items[out->count++] = copy;
    }
    zhashx_destroy(&seen);
    return ok;
}
