/*  config.h - the daemons' configuration files.

    A configuration file is one YAML mapping of settings, `key: value`, each
    key named like the daemon's long option without its dashes ("map-max:
    1024" is "--map-max 1024"). The file is read before the command line,
    so a flag given on the command line overrides the file. Anything wrong
    - YAML that does not parse, a key that is not a setting, a value that
    is not a single value or that the option refuses - is reported as
    FILE:LINE: reason.

    Internal to the project (prefix sbi_); the daemons link it, the client
    library does not.
*/
#ifndef SBI_CONFIG_H_INCLUDED
#define SBI_CONFIG_H_INCLUDED

#include <getopt.h>

#include "sbi.h"

typedef struct sbi_config_t sbi_config_t;

/* Reads `path`. NULL on failure, with "PATH:LINE: reason" (or "PATH: reason")
   in `err`. An empty file, or one holding only comments, has no settings. */
sbi_config_t *sbi_config_load(const char *path, char *err, size_t err_size);

/* The same from text in memory; `path` names it in messages. */
sbi_config_t *sbi_config_parse(const char *path, const char *data, size_t size, char *err,
                               size_t err_size);

void sbi_config_destroy(sbi_config_t **self_p);

/* The settings, in file order; strings live as long as the config. */
size_t sbi_config_size(sbi_config_t *self);
const char *sbi_config_key(sbi_config_t *self, size_t index);
const char *sbi_config_value(sbi_config_t *self, size_t index);
size_t sbi_config_line(sbi_config_t *self, size_t index);

/* Sets one option: `opt` is the getopt value of the option, `value` its
   argument (NULL for an option without one). Returns 0, or -1 with the
   reason in `err` ("needs milliseconds (1..3600000)"). */
typedef int(sbi_config_option_fn)(void *arg, int opt, const char *value, char *err,
                                  size_t err_size);

/* Applies every setting through `fn`: the key must name a long option of
   `options` that is not in `excluded` (a NULL-terminated list of names the
   file may not set, such as "config" and "help"). An option without an
   argument takes true or false. Returns 0, or -1 with "PATH:LINE: reason"
   in `err`. */
int sbi_config_apply(sbi_config_t *self, const struct option *options,
                     const char *const *excluded, sbi_config_option_fn *fn, void *arg,
                     char *err, size_t err_size) SBI_UNUSED_RESULT;

/* The FILE of "--config FILE" or "--config=FILE" in argv (before any
   "--"), or NULL. */
const char *sbi_config_arg(int argc, char **argv);

#endif
