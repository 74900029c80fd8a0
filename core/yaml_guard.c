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
