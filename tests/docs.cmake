# Checks that need no cmocka: the exported symbols against the reviewed
# list (src/*.map), the man pages against the exported symbols, and every C
# block of README.md compiled against the built tree. Included from
# tests/CMakeLists.txt.

if(CMAKE_NM)
  set(EG_NM ${CMAKE_NM})
else()
  set(EG_NM nm)
endif()

if(EG_HAVE_VERSION_SCRIPT)
  add_test(NAME abi_symbols
    COMMAND sh ${PROJECT_SOURCE_DIR}/tools/check-symbols
            $<TARGET_FILE:errgroup> ${EG_MAP} ${EG_NM})
  foreach(a IN LISTS EG_ADAPTERS)
    add_test(NAME abi_symbols_${a}
      COMMAND sh ${PROJECT_SOURCE_DIR}/tools/check-symbols
              $<TARGET_FILE:errgroup-${a}> ${PROJECT_SOURCE_DIR}/src/errgroup-${a}.map ${EG_NM})
  endforeach()
endif()

if(EG_HAVE_MAN)
  # Every public function documented in the block format (not only
  # warned about, as the build does).
  add_test(NAME man_format
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/mkman --check
            --root ${PROJECT_SOURCE_DIR} ${EG_MAN_HEADERS})
  set(_eg_man_libs $<TARGET_FILE:errgroup>)
  foreach(a IN LISTS EG_ADAPTERS)
    list(APPEND _eg_man_libs $<TARGET_FILE:errgroup-${a}>)
  endforeach()
  # The fault-injection build's test hooks are exported but not public API.
  set(_eg_man_except "")
  if(EG_FAULT_INJECTION)
    set(_eg_man_except --except "eg_fault_set eg_fault_calls")
  endif()
  add_test(NAME man_pages
    COMMAND sh ${PROJECT_SOURCE_DIR}/tools/check-manpages ${_eg_man_except}
            ${EG_MAN_DIR} ${EG_NM} ${_eg_man_libs})
endif()

# README.md: each ```c block compiles (and links, if it has a main).
# Blocks that use an adapter that is not built are skipped.
set(_eg_readme_cflags "-I${PROJECT_SOURCE_DIR}/include")
set(_eg_readme_skip "")
set(_eg_dirs ${CURL_INCLUDE_DIRS} ${EG_DEP_REDIS_INCLUDE_DIRS} ${EG_DEP_PQ_INCLUDE_DIRS})
foreach(d IN LISTS _eg_dirs)
  string(APPEND _eg_readme_cflags " -I${d}")
endforeach()
foreach(a IN ITEMS curl redis pq)
  if(NOT TARGET errgroup-${a})
    if(_eg_readme_skip)
      string(APPEND _eg_readme_skip "|")
    endif()
    string(APPEND _eg_readme_skip "eg/${a}\\.h")
  endif()
endforeach()
if(EG_SANITIZE)
  string(APPEND _eg_readme_cflags " -fsanitize=${EG_SANITIZE}")
endif()
add_test(NAME readme_blocks
  COMMAND sh ${PROJECT_SOURCE_DIR}/tools/readme-blocks
          --cc ${CMAKE_C_COMPILER} --cflags ${_eg_readme_cflags}
          --libs "$<TARGET_FILE:errgroup> -pthread" --skip "${_eg_readme_skip}"
          --out ${CMAKE_CURRENT_BINARY_DIR}/readme-blocks ${PROJECT_SOURCE_DIR}/README.md)
