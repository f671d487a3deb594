/*
 * coro_switch.h - the machine context of a coroutine: make one on a stack,
 * switch between two.
 *
 * On x86-64 (System V) and aarch64 (AAPCS64) a switch is a dozen
 * instructions in coro_switch.c: it pushes the callee-saved registers and
 * the floating-point control state (MXCSR and the x87 control word; FPCR)
 * on the current stack, stores the stack pointer in *from, loads to's and
 * pops the same set. Caller-saved registers need no saving: the switch is a
 * function call for the compiler. Elsewhere it falls back to ucontext
 * (swapcontext makes a sigprocmask system call per switch).
 *
 * Nothing here knows about sanitizers or schedulers (coro.c does).
 */
#ifndef EG_CORO_SWITCH_H
#define EG_CORO_SWITCH_H

#include <stddef.h>

#if !defined(EG_CORO_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define EG_CORO_UCONTEXT 1
#endif

#ifdef EG_CORO_UCONTEXT
#include <ucontext.h>
#endif

#include "internal.h"

typedef struct eg__mctx {
#ifdef EG_CORO_UCONTEXT
    ucontext_t uc;
#else
    void *sp; /* saved stack pointer; the registers are on that stack */
#endif
} eg__mctx;

/* Prepares c so that the first switch to it calls fn(arg) on the stack
 * [lo, lo + size). fn must never return: it ends by switching away for
 * good. The FP control state starts at the ABI defaults. */
EG_HIDDEN void eg__mctx_make(eg__mctx *c, void *lo, size_t size, void (*fn)(void *),
                             void *arg);
/* Saves the running context in from and resumes to. Returns when some
 * context switches back to from. */
EG_HIDDEN void eg__mctx_switch(eg__mctx *from, eg__mctx *to);

#endif
