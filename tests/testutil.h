/*
 * testutil.h - helpers shared by the cmocka test programs.
 */
#ifndef EG_TESTUTIL_H
#define EG_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "errgroup.h"

#ifndef EG_TEST_CASE_SECONDS
#define EG_TEST_CASE_SECONDS 60
#endif

static void eg_test_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: test case hung, aborting\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    abort();
}

/* cmocka setup: arm a per-case watchdog so a deadlock fails the case. */
static int eg_test_watchdog(void **state)
{
    (void)state;
    signal(SIGALRM, eg_test_on_alarm);
    alarm(EG_TEST_CASE_SECONDS);
    return 0;
}

static int eg_test_watchdog_off(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

/* A test case with the watchdog around it. */
#define EG_TEST(f) cmocka_unit_test_setup_teardown(f, eg_test_watchdog, eg_test_watchdog_off)

#define MS(x) ((int64_t)(x) * EG_NSEC_PER_MSEC)

#endif
