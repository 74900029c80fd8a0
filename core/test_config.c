/*  test_config.c - configuration files: settings in order with their lines,
    and every malformed file named with its line. */
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "testing.h"

static char s_path[64];

/* Writes `text` to a fresh temporary file and loads it. */
static sbi_config_t *s_load(const char *text, char *err, size_t size)
{
    snprintf(s_path, sizeof s_path, "/tmp/sharebus-config.XXXXXX");
    int fd = mkstemp(s_path);
    if (fd < 0)
        return NULL;
    if (write(fd, text, strlen(text)) != (ssize_t) strlen(text))
        err[0] = 0;
    close(fd);
    err[0] = 0;
    sbi_config_t *config = sbi_config_load(s_path, err, size);
    unlink(s_path);
    return config;
}

/* err must begin with "PATH:LINE:". */
static bool s_at_line(const char *err, int line)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s:%d: ", s_path, line);
    return strncmp(err, prefix, strlen(prefix)) == 0;
}

typedef struct {
    const char *certs;
    long skew;
    bool json;
} s_args_t;

static const struct option s_options[] = {
    {"certs", required_argument, 0, 'c'}, {"skew", required_argument, 0, 's'},
    {"json", no_argument, 0, 'j'},        {"config", required_argument, 0, 'F'},
    {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
static const char *const s_excluded[] = {"config", "help", NULL};

static int s_option(void *arg, int opt, const char *value, char *err, size_t size)
{
    s_args_t *a = arg;
    char *end;
    switch (opt) {
    case 'c': a->certs = value; return 0;
    case 'j': a->json = true; return 0;
    case 's':
        a->skew = strtol(value, &end, 10);
        if (*end || a->skew <= 0) {
            snprintf(err, size, "needs milliseconds");
            return -1;
        }
        return 0;
    }
    return -1;
}

TEST(test_settings_come_in_file_order_with_their_lines)
{
    char err[512];
    sbi_config_t *c = s_load("# broker? yes\ncerts: /etc/sharebus/certs\n\nskew: 5000  # ms?\n"
                             "json: true\n", err, sizeof err);
    CHECK(c);
    if (!c)
        return;
    CHECK_EQ(sbi_config_size(c), 3);
    CHECK_STR(sbi_config_key(c, 0), "certs");
    CHECK_STR(sbi_config_value(c, 0), "/etc/sharebus/certs");
    CHECK_EQ(sbi_config_line(c, 0), 2);
    CHECK_STR(sbi_config_value(c, 1), "5000");
    CHECK_EQ(sbi_config_line(c, 1), 4);
    s_args_t a = {0};
    CHECK_EQ(sbi_config_apply(c, s_options, s_excluded, s_option, &a, err, sizeof err), 0);
    CHECK_STR(a.certs, "/etc/sharebus/certs");
    CHECK_EQ(a.skew, 5000);
    CHECK(a.json);
    sbi_config_destroy(&c);
    sbi_config_destroy(&c);
}

TEST(test_empty_file_has_no_settings)
{
    char err[512];
    sbi_config_t *c = s_load("# nothing set\n", err, sizeof err);
    CHECK(c && sbi_config_size(c) == 0);
    sbi_config_destroy(&c);
}

/* Documents of nothing after the one (a trailing "---", comments) are not
   a second document. */
TEST(test_trailing_empty_documents_are_not_a_second_one)
{
    char err[512] = "";
    sbi_config_t *c = s_load("certs: /x\n---\n", err, sizeof err);
    CHECK(c && sbi_config_size(c) == 1);
    if (!c)
        fprintf(stderr, "  %s\n", err);
    sbi_config_destroy(&c);
    c = s_load("certs: /x\n---\n# the end\n---\n", err, sizeof err);
    CHECK(c && sbi_config_size(c) == 1);
    sbi_config_destroy(&c);
}

TEST(test_unknown_setting_is_named_with_its_line)
{
    char err[512];
    sbi_config_t *c = s_load("certs: /x\n\nbogus: 1\n", err, sizeof err);
    CHECK(c);
    if (!c)
        return;
    s_args_t a = {0};
    CHECK_EQ(sbi_config_apply(c, s_options, s_excluded, s_option, &a, err, sizeof err), -1);
    CHECK(s_at_line(err, 3));
    CHECK(strstr(err, "unknown setting 'bogus'"));
    sbi_config_destroy(&c);
}

TEST(test_excluded_option_is_unknown_in_a_file)
{
    char err[512];
    sbi_config_t *c = s_load("config: other.conf\n", err, sizeof err);
    s_args_t a = {0};
    CHECK(c && sbi_config_apply(c, s_options, s_excluded, s_option, &a, err, sizeof err) == -1);
    CHECK(s_at_line(err, 1) && strstr(err, "unknown setting 'config'"));
    sbi_config_destroy(&c);
}

TEST(test_bad_value_is_named_with_its_line)
{
    char err[512];
    s_args_t a = {0};
    sbi_config_t *c = s_load("certs: /x\nskew: soon\n", err, sizeof err);
    CHECK(c && sbi_config_apply(c, s_options, s_excluded, s_option, &a, err, sizeof err) == -1);
    CHECK(s_at_line(err, 2) && strstr(err, "skew: needs milliseconds"));
    sbi_config_destroy(&c);
    c = s_load("json: maybe\n", err, sizeof err);
    CHECK(c && sbi_config_apply(c, s_options, s_excluded, s_option, &a, err, sizeof err) == -1);
    CHECK(s_at_line(err, 1) && strstr(err, "true or false"));
    sbi_config_destroy(&c);
}

TEST(test_malformed_files_are_refused_at_their_line)
{
    static const struct {
        const char *text;
        int line;
    } cases[] = {
        {"certs: /x\nskew:\n", 2},                 /* no value */
        {"certs: /x\nskew: [1, 2]\n", 2},          /* a list */
        {"certs: /x\nskew:\n  a: 1\n", 2},         /* a mapping */
        {"certs: /x\ncerts: /y\n", 2},             /* twice */
        {"certs: /x\n  skew: 1\n", 1},             /* a multi-line key, from line 1 */
        {"- certs\n", 1},                          /* not a mapping */
        {"certs: /x\n---\nskew: 1\n", 3},          /* two documents */
        {"certs: /x\n---\n---\n# x\n---\nskew: 1\n", 6}, /* the second after empty ones */
        {"certs: /x\n---\n--- {}\n", 3},          /* an empty mapping is something */
        {"certs: \"/x\n", 1},                      /* unterminated quote */
        {"certs: /x\n%\x8c\n", 2},                  /* not UTF-8 (libfyaml would loop) */
        {"certs: /x\nskew: \x01\n", 2},              /* a control character */
        {"certs: /x\n? ?:\t:\n", 2},                 /* explicit keys (libfyaml crashes) */
        {"certs: /x\n{? a: b}\n", 2},
        {"certs: /x\nlisten: 'a''''b'\n", 2},      /* libfyaml misreads it (a''' not a''b) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512];
        sbi_config_t *c = s_load(cases[i].text, err, sizeof err);
        if (c) {
            fprintf(stderr, "  case %zu loaded\n", i);
            CHECK(!c);
            sbi_config_destroy(&c);
            continue;
        }
        if (!s_at_line(err, cases[i].line))
            fprintf(stderr, "  case %zu: %s (expected line %d)\n", i, err, cases[i].line);
        CHECK(s_at_line(err, cases[i].line));
    }
}

TEST(test_missing_file_is_named)
{
    char err[512];
    CHECK(!sbi_config_load("/nonexistent/sharebus.conf", err, sizeof err));
    CHECK(strstr(err, "/nonexistent/sharebus.conf: "));
}

TEST(test_config_arg_is_found_before_double_dash)
{
    char *argv1[] = {"x", "--certs", "d", "--config", "f.conf", NULL};
    char *argv2[] = {"x", "--config=g.conf", NULL};
    char *argv3[] = {"x", "--", "--config", "h.conf", NULL};
    CHECK_STR(sbi_config_arg(5, argv1), "f.conf");
    CHECK_STR(sbi_config_arg(2, argv2), "g.conf");
    CHECK(sbi_config_arg(4, argv3) == NULL);
}

int main(int argc, char **argv)
{
    sbi_init();
    return RUN_TESTS();
}
