/*  yaml_guard.c - what Debian 12's libfyaml gets wrong, found in a loaded
    document before anything reads a value from it. */
#include "yaml_guard.h"

#include <string.h>

static bool s_misread(struct fy_node *node, const char *data, size_t size, size_t *line,
                      size_t *column)
{
    void *iter = NULL;
    if (!node || fy_node_is_alias(node))
        return false;
    if (fy_node_is_mapping(node)) {
        struct fy_node_pair *pair;
        while ((pair = fy_node_mapping_iterate(node, &iter)))
            if (s_misread(fy_node_pair_key(pair), data, size, line, column)
                || s_misread(fy_node_pair_value(pair), data, size, line, column))
                return true;
        return false;
    }
    if (fy_node_is_sequence(node)) {
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(node, &iter)))
            if (s_misread(item, data, size, line, column))
                return true;
        return false;
    }
    if (fy_node_get_style(node) != FYNS_SINGLE_QUOTED)
        return false;
    /* The scalar as written, quotes and all: "''''" is two escapes in a
       row (or an escape next to a closing quote, refused too: harmless). */
    struct fy_token *token = fy_node_get_scalar_token(node);
    const struct fy_mark *start = token ? fy_token_start_mark(token) : NULL;
    const struct fy_mark *end = token ? fy_token_end_mark(token) : NULL;
    if (!start || !end || start->input_pos > end->input_pos || end->input_pos > size
        || !memmem(data + start->input_pos, end->input_pos - start->input_pos, "''''", 4))
        return false;
    *line = (size_t) start->line + 1;
    *column = start->column > 0 ? (size_t) start->column : 1;  /* its mark is after the quote */
    return true;
}

bool sbi_yaml_misread_quotes(struct fy_document *doc, const char *data, size_t size,
                             size_t *line, size_t *column)
{
    return doc && s_misread(fy_document_root(doc), data, size, line, column);
}

static bool s_document_empty(struct fy_document *doc)
{
    struct fy_node *root = fy_document_root(doc);
    size_t len = 0;
    return !root || (fy_node_is_scalar(root) && !fy_node_is_alias(root)
                     && !fy_node_get_scalar_token(root) && !fy_node_get_tag(root, &len)
                     && !fy_node_get_anchor(root));
}

/* Where `node` begins: its own token, or its first key or item's. */
static const struct fy_mark *s_node_mark(struct fy_node *node)
{
    struct fy_token *token = node ? fy_node_get_scalar_token(node) : NULL;
    if (token)
        return fy_token_start_mark(token);
    void *iter = NULL;
    if (node && fy_node_is_mapping(node)) {
        struct fy_node_pair *pair = fy_node_mapping_iterate(node, &iter);
        return pair ? s_node_mark(fy_node_pair_key(pair)) : NULL;
    }
    if (node && fy_node_is_sequence(node))
        return s_node_mark(fy_node_sequence_iterate(node, &iter));
    return NULL;
}

struct fy_document *sbi_yaml_next_document(struct fy_parser *parser, struct fy_diag *diag,
                                           size_t *line, size_t *column)
{
    struct fy_document *doc;
    while (!fy_diag_got_error(diag) && (doc = fy_parse_load_document(parser))) {
        if (!s_document_empty(doc)) {
            const struct fy_mark *at = s_node_mark(fy_document_root(doc));
            if (!at)
                at = fy_document_state_start_mark(fy_document_get_document_state(doc));
            *line = at && at->line >= 0 ? (size_t) at->line + 1 : 1;
            *column = at && at->column >= 0 ? (size_t) at->column + 1 : 1;
            return doc;
        }
        fy_parse_document_destroy(parser, doc);
    }
    return NULL;
}
