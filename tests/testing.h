/*  testing.h - a very small test runner shared by the unit tests.

    TEST(name) { ... } defines a test; CHECK(cond) and CHECK_EQ(a, b) record
    failures without stopping; RUN_TESTS() in main runs every test (or those
    whose name contains argv[1]) and returns the exit status. */
#ifndef TESTING_H_INCLUDED
#define TESTING_H_INCLUDED

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn_t)(void);
typedef struct {
    const char *name;
    test_fn_t fn;
} test_case_t;

#define TESTS_MAX 256
static test_case_t s_tests[TESTS_MAX];
static int s_test_count;
static int s_failures;

#define TEST(name)                                                          \
    static void name(void);                                                 \
    __attribute__((constructor)) static void register_##name(void)          \
    {                                                                       \
        if (s_test_count < TESTS_MAX)                                       \
            s_tests[s_test_count++] = (test_case_t){#name, name};           \
    }                                                                       \
    static void name(void)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__,        \
                    __LINE__, #cond);                                       \
            s_failures++;                                                   \
        }                                                                   \
    } while (0)

#define CHECK_EQ(a, b)                                                      \
    do {                                                                    \
        long long a_ = (long long) (a), b_ = (long long) (b);               \
        if (a_ != b_) {                                                     \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n",   \
                    __FILE__, __LINE__, #a, a_, #b, b_);                    \
            s_failures++;                                                   \
        }                                                                   \
    } while (0)

#define CHECK_STR(a, b)                                                     \
    do {                                                                    \
        const char *a_ = (a), *b_ = (b);                                    \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                            \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n",     \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)",             \
                    b_ ? b_ : "(null)");                                    \
            s_failures++;                                                   \
        }                                                                   \
    } while (0)

static inline int run_tests(int argc, char **argv)
{
    int failed_tests = 0, ran = 0;
    for (int i = 0; i < s_test_count; i++) {
        if (argc > 1 && !strstr(s_tests[i].name, argv[1]))
            continue;
        int before = s_failures;
        s_tests[i].fn();
        ran++;
        bool failed = s_failures != before;
        failed_tests += failed;
        printf("%s %s\n", failed ? "FAIL" : "ok  ", s_tests[i].name);
    }
    printf("%d test(s), %d failed\n", ran, failed_tests);
    return failed_tests || ran == 0 ? 1 : 0;
}

#define RUN_TESTS() run_tests(argc, argv)

#endif
