/*
 * errgroup.h - Go's errgroup and context for C11
 *
 * The umbrella header: includes the core (contexts, groups, WaitGroup and
 * Once, the pool, blocking points, channels, semaphores, hedged calls). The
 * optional libcurl adapter is included separately as <eg/curl.h> and
 * linked as -lerrgroup-curl.
 *
 * Errors are int: functions return 0 (or a count) on success and a
 * negative errno value on failure. A cancelled context reports -ECANCELED,
 * a passed deadline -ETIMEDOUT. This header (through <eg/common.h>)
 * includes <errno.h>, so the codes are declared for every user.
 *
 * Each function's page lists what it returns (each error code), whether and
 * on what it blocks, its thread-safety, who owns its arguments and results,
 * and what NULL arguments do.
 */
#ifndef ERRGROUP_H
#define ERRGROUP_H

/* Every public function is documented where it is declared, in the block
 * format that tools/mkman turns into the man pages (described at the top
 * of tools/mkman). */

#include "eg/common.h"
#include "eg/ctx.h"
#include "eg/group.h"
#include "eg/sync.h"
#include "eg/pool.h"
#include "eg/io.h"
#include "eg/chan.h"
#include "eg/sem.h"
#include "eg/hedge.h"

#endif
