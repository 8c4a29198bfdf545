/* test.c - the harness behind test.h. */
#include "test.h"

#include "parley.h"

jmp_buf pl_test_jump;
int pl_test_passed, pl_test_failed;
const char *pl_test_current;

void pl_test_run(void (*fn)(void), const char *name)
{
    static int initialised;
    if (!initialised) {
        if (!pl_init()) {
            fprintf(stderr, "cannot initialise libsodium\n");
            pl_test_failed++;
            return;
        }
        initialised = 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
    }
    pl_test_current = name;
    if (setjmp(pl_test_jump) == 0) {
        fn();
        pl_test_passed++;
        printf("ok   %s\n", name);
    } else {
        pl_test_failed++;
        printf("FAIL %s\n", name);
    }
    fflush(stdout);
}

int pl_test_summary(void)
{
    printf("PL-TEST-SUMMARY %d %d\n", pl_test_passed, pl_test_failed);
    return pl_test_failed ? 1 : 0;
}
