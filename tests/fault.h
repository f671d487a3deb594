/* The library's fault-injection hooks, for the tests that use them. */
#include "../src/fault.h"
