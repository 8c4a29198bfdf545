/*
 * test.h - a very small test harness.
 *
 * A test is a function; CHECK stops it at the first failed expectation and
 * says where. Each program ends with pl_test_summary(), which prints the
 * machine-readable line tests/run.sh adds up.
 */
#ifndef PL_TEST_H
#define PL_TEST_H

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

extern jmp_buf pl_test_jump;
extern int pl_test_passed, pl_test_failed;
extern const char *pl_test_current;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "  FAIL %s: %s:%d: %s\n", pl_test_current, __FILE__, __LINE__, #cond); \
            longjmp(pl_test_jump, 1);                                                    \
        }                                                                                \
    } while (0)

#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        long long va_ = (long long)(a), vb_ = (long long)(b);                            \
        if (va_ != vb_) {                                                                \
            fprintf(stderr, "  FAIL %s: %s:%d: %s == %s (%lld != %lld)\n", pl_test_current, \
                    __FILE__, __LINE__, #a, #b, va_, vb_);                               \
            longjmp(pl_test_jump, 1);                                                    \
        }                                                                                \
    } while (0)

void pl_test_run(void (*fn)(void), const char *name);
int pl_test_summary(void);

#define RUN(fn) pl_test_run(fn, #fn)

#endif
