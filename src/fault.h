/*
 * fault.h - the fault-injection hooks of a library built with
 * -DEG_FAULT_INJECTION=ON (never in a release build).
 */
#ifndef EG_FAULT_H
#define EG_FAULT_H

#include "eg/common.h"

enum eg_fault_kind {
    EG_FAULT_MALLOC, /* malloc/calloc inside the library: ENOMEM */
    EG_FAULT_THREAD, /* pthread_create of pool and timer threads: EAGAIN */
    EG_FAULT_FD,     /* eventfd/pipe for eg_ctx_fd: EMFILE */
    EG_FAULT_KINDS
};

/* Makes the nth call of that kind from now fail (1: the next call); 0 turns
 * the fault off; a negative nth makes every call fail until turned off. */
EG_EXPORT void eg_fault_set(int kind, long nth);
/* Calls of that kind seen since the process started. */
EG_EXPORT long eg_fault_calls(int kind);

#endif
