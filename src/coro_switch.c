/*
 * coro_switch.c - context switch for x86-64 System V and aarch64 AAPCS64,
 * ucontext elsewhere.
 *
 * eg__coro_jump(void **from_sp, void *to_sp) saves, on the current stack:
 *
 *   x86-64:  rbp rbx r12 r13 r14 r15 (pushed in that order), then a 16-byte
 *            slot holding the x87 control word (offset 0) and MXCSR (8);
 *   aarch64: x19..x28, x29 (fp), x30 (lr), d8..d15 (the low halves of
 *            v8..v15 are callee-saved), FPCR: 176 bytes.
 *
 * It stores the stack pointer in *from_sp, switches to to_sp, restores the
 * same layout from there and returns into the resumed context. A new
 * context is a stack holding that layout, with the return address set to a
 * trampoline that calls fn(arg) with the entry and argument carried in two
 * callee-saved registers (r12/r13; x19/x20).
 *
 * The control words are part of the switch because a task may change the
 * rounding mode (fesetround) or the exception mask; each coroutine keeps its
 * own, as a thread would.
 */
#include <stdint.h>
#include <string.h>

#include "coro_switch.h"

#ifndef EG_CORO_UCONTEXT

EG_HIDDEN void eg__coro_jump(void **from_sp, void *to_sp);
EG_HIDDEN void eg__coro_trampoline(void);

#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl eg__coro_jump\n"
        ".hidden eg__coro_jump\n"
        ".type eg__coro_jump,@function\n"
        "eg__coro_jump:\n"
        "    .cfi_startproc\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $16, %rsp\n"
        "    fnstcw (%rsp)\n"
        "    stmxcsr 8(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    fldcw (%rsp)\n"
        "    ldmxcsr 8(%rsp)\n"
        "    addq $16, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size eg__coro_jump,.-eg__coro_jump\n"
        "\n"
        ".p2align 4\n"
        ".globl eg__coro_trampoline\n"
        ".hidden eg__coro_trampoline\n"
        ".type eg__coro_trampoline,@function\n"
        "eg__coro_trampoline:\n"
        "    .cfi_startproc\n"
        "    .cfi_undefined rip\n" /* end of the unwinder's walk */
        "    movq %r13, %rdi\n"
        "    callq *%r12\n"
        "    ud2\n" /* fn never returns */
        "    .cfi_endproc\n"
        ".size eg__coro_trampoline,.-eg__coro_trampoline\n");

#define FRAME_WORDS 10 /* cw/mxcsr(2) r15 r14 r13 r12 rbx rbp ret pad */

void eg__mctx_make(eg__mctx *c, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    /* After the switch's ret, rsp = top - 16 (16-byte aligned, as the
     * trampoline's call needs); the word at top - 16 is a zero return
     * address for debuggers. */
    uint64_t *sp = (uint64_t *)(top - 16) - 9;
    memset(sp, 0, (9 + 2) * sizeof *sp);
    sp[0] = 0x037F;                   /* x87 control word: ABI default */
    sp[1] = 0x1F80;                   /* MXCSR: ABI default (all exceptions masked) */
    sp[2] = 0;                        /* r15 */
    sp[3] = 0;                        /* r14 */
    sp[4] = (uint64_t)(uintptr_t)arg; /* r13 */
    sp[5] = (uint64_t)(uintptr_t)fn;  /* r12 */
    sp[6] = 0;                        /* rbx */
    sp[7] = 0;                        /* rbp: ends frame-pointer walks */
    sp[8] = (uint64_t)(uintptr_t)eg__coro_trampoline;
    c->sp = sp;
}

#elif defined(__aarch64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl eg__coro_jump\n"
        ".hidden eg__coro_jump\n"
        ".type eg__coro_jump,%function\n"
        "eg__coro_jump:\n"
        "    sub sp, sp, #176\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mrs x9, fpcr\n"
        "    str x9, [sp, #160]\n"
        "    mov x9, sp\n"
        "    str x9, [x0]\n"
        "    mov sp, x1\n"
        "    ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    ldr x9, [sp, #160]\n"
        "    msr fpcr, x9\n"
        "    add sp, sp, #176\n"
        "    ret\n"
        ".size eg__coro_jump,.-eg__coro_jump\n"
        "\n"
        ".p2align 4\n"
        ".globl eg__coro_trampoline\n"
        ".hidden eg__coro_trampoline\n"
        ".type eg__coro_trampoline,%function\n"
        "eg__coro_trampoline:\n"
        "    mov x0, x20\n"
        "    blr x19\n"
        "    brk #0\n"
        ".size eg__coro_trampoline,.-eg__coro_trampoline\n");

void eg__mctx_make(eg__mctx *c, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)fn;                   /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;                  /* x20 */
    sp[10] = 0;                                        /* x29: ends frame-pointer walks */
    sp[11] = (uint64_t)(uintptr_t)eg__coro_trampoline; /* x30 */
    sp[20] = 0; /* FPCR: round to nearest, no traps */
    c->sp = sp;
}
#endif

void eg__mctx_switch(eg__mctx *from, eg__mctx *to)
{
    eg__coro_jump(&from->sp, to->sp);
}

#else /* EG_CORO_UCONTEXT */

/* makecontext passes int arguments only: the pointers travel split in two. */
static void uc_entry(unsigned fn_hi, unsigned fn_lo, unsigned arg_hi, unsigned arg_lo)
{
    void (*fn)(void *) = (void (*)(void *))(((uintptr_t)fn_hi << 16 << 16) | fn_lo);
    void *arg = (void *)(((uintptr_t)arg_hi << 16 << 16) | arg_lo);
    fn(arg);
    abort();
}

void eg__mctx_make(eg__mctx *c, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    uintptr_t f = (uintptr_t)fn, a = (uintptr_t)arg;
    makecontext(&c->uc, (void (*)(void))uc_entry, 4, (unsigned)(f >> 16 >> 16),
                (unsigned)f, (unsigned)(a >> 16 >> 16), (unsigned)a);
}

void eg__mctx_switch(eg__mctx *from, eg__mctx *to)
{
    swapcontext(&from->uc, &to->uc);
}

#endif
