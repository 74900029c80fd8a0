/*  fuzz_config - any bytes as a daemon's configuration file. What loads is
    applied to an option table like the daemons' (flags and values), so the
    key matching and the FILE:LINE errors run too. */
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct option s_options[] = {
    {"certs", required_argument, 0, 'c'}, {"skew", required_argument, 0, 's'},
    {"json", no_argument, 0, 'j'},        {"config", required_argument, 0, 'F'},
    {0, 0, 0, 0}};
static const char *const s_excluded[] = {"config", NULL};

static int s_option(void *arg, int opt, const char *value, char *err, size_t size)
{
    if (opt == 's' && (!value || !*value || strspn(value, "0123456789") != strlen(value))) {
        snprintf(err, size, "needs milliseconds");
        return -1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    sbi_config_t *config = sbi_config_parse("fuzz.conf", (const char *) data, size, err, sizeof err);
    if (config) {
        for (size_t i = 0; i < sbi_config_size(config); i++)
            if (!sbi_config_key(config, i) || !sbi_config_value(config, i)
                || sbi_config_line(config, i) < 1)
                abort();
        if (sbi_config_apply(config, s_options, s_excluded, s_option, NULL, err, sizeof err) != 0
            && strncmp(err, "fuzz.conf:", 10) != 0)
            abort();
    }
    else if (strncmp(err, "fuzz.conf", 9) != 0)
        abort();
    sbi_config_destroy(&config);
    return 0;
}
