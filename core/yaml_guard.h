/*  yaml_guard.h - what Debian 12's libfyaml gets wrong, found in a loaded
    document before anything reads a value from it. Internal to the
    project (prefix sbi_): the policy loader and the configuration files. */
#ifndef SBI_YAML_GUARD_H_INCLUDED
#define SBI_YAML_GUARD_H_INCLUDED

#include <libfyaml.h>

#include "sbi.h"

/* True when a single-quoted scalar of `doc` (key or value) holds two ''
   escapes in a row, with its 1-based line and column. libfyaml 0.7.12
   reads 'x''''y' as x''' (not x''y), and leaks what it allocated for it:
   callers refuse such a file. `data` and `size` are the text `doc` was
   parsed from. */
bool sbi_yaml_misread_quotes(struct fy_document *doc, const char *data, size_t size,
                             size_t *line, size_t *column);

/* The next document of `parser` that holds something, skipping documents
   of nothing (a trailing "---", or one followed by comments only, which
   libfyaml gives an empty root no token wrote); NULL when none comes or
   `diag` has an error. The caller destroys it (fy_parse_document_destroy)
   and refuses the file: it holds one document. Sets `line` (1-based) to
   where it shows, its first value, or else its "---". */
struct fy_document *sbi_yaml_next_document(struct fy_parser *parser, struct fy_diag *diag,
                                           size_t *line, size_t *column);

#endif
