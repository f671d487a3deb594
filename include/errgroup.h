/*
 * errgroup.h - Go's errgroup and context for C11.
 *
 * The umbrella header: includes the core (contexts, groups, WaitGroup and
 * Once, the pool, blocking points, channels, semaphores). The optional
 * libcurl adapter is included separately as <eg/curl.h>.
 */
#ifndef ERRGROUP_H
#define ERRGROUP_H

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
