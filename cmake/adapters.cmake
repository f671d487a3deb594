# The optional Redis (hiredis) and PostgreSQL (libpq) adapters, each built
# when its client library is found, like the libcurl adapter:
#   EG_REDIS / EG_PQ = AUTO (default: build if found), ON (required), OFF.
# Included from CMakeLists.txt after the core targets; sets EG_HAVE_REDIS,
# EG_HAVE_PQ. Both libraries are found through pkg-config (hiredis.pc,
# libpq.pc), and the installed errgroupConfig.cmake finds them the same way.
set(EG_REDIS "AUTO" CACHE STRING "Build the hiredis adapter: AUTO, ON or OFF")
set(EG_PQ "AUTO" CACHE STRING "Build the libpq adapter: AUTO, ON or OFF")

# eg_adapter(<NAME> <option value> <pkg-config module> <source>)
# Defines errgroup-<name> (alias and export name errgroup::<name>) and its
# installation (library, header, .pc file), and sets EG_HAVE_<NAME>.
function(eg_adapter name mode module source)
  string(TOUPPER ${name} upper)
  set(EG_HAVE_${upper} OFF PARENT_SCOPE)
  if(mode STREQUAL "OFF")
    return()
  endif()
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    if(mode STREQUAL "ON")
      pkg_check_modules(EG_DEP_${upper} REQUIRED IMPORTED_TARGET ${module})
    else()
      pkg_check_modules(EG_DEP_${upper} QUIET IMPORTED_TARGET ${module})
    endif()
  elseif(mode STREQUAL "ON")
    message(FATAL_ERROR "EG_${upper}=ON needs pkg-config to find ${module}")
  endif()
  if(NOT EG_DEP_${upper}_FOUND)
    message(STATUS "${module} not found: the errgroup-${name} adapter and its tests are skipped")
    return()
  endif()
  set(EG_HAVE_${upper} ON PARENT_SCOPE)
  add_library(errgroup-${name} SHARED ${source})
  target_include_directories(errgroup-${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_definitions(errgroup-${name} PRIVATE _GNU_SOURCE)
  target_link_libraries(errgroup-${name} PUBLIC errgroup PkgConfig::EG_DEP_${upper})
  set_target_properties(errgroup-${name} PROPERTIES
    VERSION ${PROJECT_VERSION} SOVERSION ${EG_SOVERSION} EXPORT_NAME ${name})
  add_library(errgroup::${name} ALIAS errgroup-${name})
  # Its exported symbols: the reviewed list src/errgroup-<name>.map.
  eg_version_script(errgroup-${name} ${PROJECT_SOURCE_DIR}/src/errgroup-${name}.map)
  install(TARGETS errgroup-${name} EXPORT errgroupTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES include/eg/${name}.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/eg)
  configure_file(cmake/errgroup-${name}.pc.in errgroup-${name}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/errgroup-${name}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

eg_adapter(redis "${EG_REDIS}" hiredis src/redis.c)
eg_adapter(pq "${EG_PQ}" libpq src/pq.c)
