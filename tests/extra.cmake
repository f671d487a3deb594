# The stress program and settings for the robustness tests; included from
# tests/CMakeLists.txt after its test_*.c loop (which builds test_regress,
# test_fork and test_fault).
#
# stress is a standalone program, not a cmocka test: it prints its seed,
# runs randomized rounds and checks invariants after each one. Replay a
# failure with `stress --seed S`; run longer with --rounds N or --seconds T.

set(EG_STRESS_ROUNDS 10000 CACHE STRING "Rounds of the stress test under ctest")
math(EXPR _eg_stress_timeout "600 * ${EG_TEST_SLOWDOWN}")
set(EG_STRESS_TIMEOUT ${_eg_stress_timeout} CACHE STRING "Timeout of the stress test, seconds")

add_executable(stress ${CMAKE_CURRENT_SOURCE_DIR}/stress.c)
target_compile_definitions(stress PRIVATE _GNU_SOURCE)
target_link_libraries(stress PRIVATE errgroup Threads::Threads)
add_test(NAME stress COMMAND stress --rounds ${EG_STRESS_ROUNDS})
set_tests_properties(stress PROPERTIES TIMEOUT ${EG_STRESS_TIMEOUT})

# test_fault needs the hooks of a -DEG_FAULT_INJECTION=ON library; against
# any other it only prints that it skipped.
if(TARGET test_fault AND NOT EG_FAULT_INJECTION)
  set_tests_properties(test_fault PROPERTIES DISABLED TRUE)
endif()

# regress_dlclose_then_idle runs dlclose_child, which dlopens the library.
add_executable(dlclose_child ${CMAKE_CURRENT_SOURCE_DIR}/dlclose_child.c)
target_compile_definitions(dlclose_child PRIVATE _GNU_SOURCE)
target_link_libraries(dlclose_child PRIVATE ${CMAKE_DL_LIBS})
add_dependencies(dlclose_child errgroup)
if(TARGET test_regress)
  target_compile_definitions(test_regress PRIVATE
    EG_DLCLOSE_CHILD="$<TARGET_FILE:dlclose_child>"
    EG_LIB_FILE="$<TARGET_FILE:errgroup>")
  add_dependencies(test_regress dlclose_child)
endif()

# withservers starts the Redis and PostgreSQL test servers around a command
# (the three-backend example runs under it).
if(EG_HAVE_REDIS AND EG_HAVE_PQ)
  add_executable(withservers ${CMAKE_CURRENT_SOURCE_DIR}/withservers.c
    ${CMAKE_CURRENT_SOURCE_DIR}/servers.c)
  target_compile_definitions(withservers PRIVATE _GNU_SOURCE)
endif()
