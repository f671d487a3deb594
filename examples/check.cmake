# Runs one example and checks its exit code and output.
#   cmake -DMODE=<mode> -DEXE=<program> -DWORK=<scratch dir> -P check.cmake
# Checks outcomes only, never timings: the examples' elapsed times depend on
# the machine (and on sanitizers).
cmake_minimum_required(VERSION 3.19) # string(JSON)

function(run)
  execute_process(COMMAND ${EXE} ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(rc "${rc}" PARENT_SCOPE)
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

function(fail what)
  message(FATAL_ERROR "${what}\n--- exit code: ${rc}\n--- stdout:\n${out}\n--- stderr:\n${err}")
endfunction()

function(expect_rc want)
  if(NOT rc STREQUAL "${want}")
    fail("expected exit code ${want}")
  endif()
endfunction()

function(expect_match text regex)
  if(NOT text MATCHES "${regex}")
    fail("output does not match: ${regex}")
  endif()
endfunction()

# ---- parallel ---------------------------------------------------------------
if(MODE STREQUAL "parallel")
  run()
  expect_rc(0)
  set(want "web result for \"golang\"\nimage result for \"golang\"\nvideo result for \"golang\"\n")
  if(NOT out STREQUAL want)
    fail("unexpected output")
  endif()

# ---- fanout -----------------------------------------------------------------
elseif(MODE STREQUAL "fanout_table")
  run()
  expect_rc(0)
  # One row per variant, B's failure reported, the errgroup row with the
  # group's error text.
  expect_match("${out}" "\nserial +[0-9]+ ms +B: HTTP 500 ")
  expect_match("${out}" "\nwaitgroup +[0-9]+ ms +B: HTTP 500 ")
  expect_match("${out}" "\nerrgroup +[0-9]+ ms +B: HTTP 500 ")
  expect_match("${out}" "server side")

elseif(MODE STREQUAL "fanout_json" OR MODE STREQUAL "fanout_all_ok")
  if(MODE STREQUAL "fanout_json")
    run(--json)
  else()
    run(--json --fail none --latency A=20,B=10,C=30)
  endif()
  expect_rc(0)
  string(STRIP "${out}" lines)
  string(REPLACE "\n" ";" lines "${lines}")
  list(LENGTH lines n)
  if(NOT n EQUAL 3)
    fail("expected 3 JSON lines, got ${n}")
  endif()
  set(i 0)
  foreach(variant serial waitgroup errgroup)
    list(GET lines ${i} line)
    math(EXPR i "${i} + 1")
    string(JSON v ERROR_VARIABLE jerr GET "${line}" variant)
    if(jerr OR NOT v STREQUAL variant)
      fail("line ${i}: variant '${v}' (${jerr}), expected ${variant}")
    endif()
    string(JSON t ERROR_VARIABLE jerr TYPE "${line}" elapsed_ms)
    if(jerr OR NOT t STREQUAL "NUMBER")
      fail("line ${i}: elapsed_ms is ${t} ${jerr}")
    endif()
    string(JSON t ERROR_VARIABLE jerr TYPE "${line}" error)
    if(MODE STREQUAL "fanout_json")
      string(JSON e GET "${line}" error)
      if(NOT t STREQUAL "STRING" OR NOT e STREQUAL "B: HTTP 500")
        fail("line ${i}: error is '${e}', expected B: HTTP 500")
      endif()
    elseif(NOT t STREQUAL "NULL")
      fail("line ${i}: error should be null")
    endif()
    string(JSON ncalls ERROR_VARIABLE jerr LENGTH "${line}" calls)
    if(jerr OR NOT ncalls EQUAL 3)
      fail("line ${i}: calls has ${ncalls} entries ${jerr}")
    endif()
    foreach(k 0 1 2)
      string(JSON name GET "${line}" calls ${k} name)
      string(JSON outcome GET "${line}" calls ${k} outcome)
      string(JSON t TYPE "${line}" calls ${k} elapsed_ms)
      if(NOT outcome MATCHES "^(ok|failed|cancelled)$" OR NOT t STREQUAL "NUMBER")
        fail("line ${i}: call ${k} is malformed")
      endif()
      # Outcomes that do not depend on timing: B fails in every variant
      # by default; with --fail none every call succeeds.
      if(MODE STREQUAL "fanout_json" AND name STREQUAL "B" AND NOT outcome STREQUAL "failed")
        fail("line ${i}: B should have failed")
      endif()
      if(MODE STREQUAL "fanout_all_ok" AND NOT outcome STREQUAL "ok")
        fail("line ${i}: ${name} should be ok")
      endif()
    endforeach()
  endforeach()

elseif(MODE STREQUAL "fanout_bad_flag")
  run(--no-such-flag)
  expect_rc(2)
  expect_match("${err}" "usage: fanout")
  run(--fail Z)
  expect_rc(2)
  run(--latency A=abc)
  expect_rc(2)
  run(--help)
  expect_rc(0)
  expect_match("${out}" "usage: fanout")

# ---- handler3 (under withservers) ------------------------------------------
elseif(MODE STREQUAL "handler3")
  execute_process(COMMAND ${WITH} ${EXE} --redis @REDIS_PORT@ --pg @PG_CONNINFO@
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  expect_rc(0)
  if(NOT out STREQUAL "profile: HTTP 200\nsession: alice\norders: 3\n")
    fail("unexpected output")
  endif()

elseif(MODE STREQUAL "handler3_fail")
  # The HTTP backend fails; the 30 s query is cancelled on the server (the
  # run ends long before it would; ctest's timeout is the bound).
  execute_process(COMMAND ${WITH} ${EXE} --redis @REDIS_PORT@ --pg @PG_CONNINFO@
      --fail http --pg-sleep 30
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  expect_rc(1)
  expect_match("${err}" "handler: profile service: HTTP 500\n")
  expect_match("${out}" "profile \\(HTTP\\): failed\n")
  expect_match("${out}" "orders \\(PostgreSQL\\): cancelled\n")

# ---- md5all -----------------------------------------------------------------
elseif(MODE STREQUAL "md5all")
  file(REMOVE_RECURSE "${WORK}")
  file(MAKE_DIRECTORY "${WORK}/sub/deeper")
  file(WRITE "${WORK}/a.txt" "hello\n")
  file(WRITE "${WORK}/empty" "")
  file(WRITE "${WORK}/sub/b.txt" "errgroup for C\n")
  string(REPEAT "0123456789abcdef" 4096 big) # larger than one read
  file(WRITE "${WORK}/sub/deeper/big.bin" "${big}")
  # A link to a file is hashed; a link to a directory is not followed.
  file(CREATE_LINK "a.txt" "${WORK}/link-to-a" SYMBOLIC)
  file(CREATE_LINK "sub" "${WORK}/link-to-sub" SYMBOLIC)

  set(want "")
  foreach(f a.txt empty link-to-a sub/b.txt sub/deeper/big.bin) # path order
    file(MD5 "${WORK}/${f}" sum)
    list(APPEND want "${sum}  ${WORK}/${f}")
  endforeach()
  string(REPLACE ";" "\n" want "${want}")
  run("${WORK}")
  expect_rc(0)
  if(NOT out STREQUAL "${want}\n")
    fail("unexpected output; expected:\n${want}")
  endif()

elseif(MODE STREQUAL "md5all_error")
  # A dangling link fails to open, whoever runs the test (root included).
  file(REMOVE_RECURSE "${WORK}")
  file(MAKE_DIRECTORY "${WORK}/sub")
  foreach(i RANGE 1 50)
    file(WRITE "${WORK}/sub/file${i}" "${i}\n")
  endforeach()
  file(CREATE_LINK "no-such-file" "${WORK}/sub/broken" SYMBOLIC)
  run("${WORK}")
  expect_rc(1)
  expect_match("${err}" "^md5all: .*/sub/broken: No such file or directory\n$")
  if(NOT out STREQUAL "")
    fail("no sums should be printed after an error")
  endif()

  run("${WORK}/no-such-dir")
  expect_rc(1)
  expect_match("${err}" "no-such-dir: No such file or directory")
  run()
  expect_rc(2)
  expect_match("${err}" "usage: md5all DIR")

else()
  message(FATAL_ERROR "check.cmake: unknown MODE '${MODE}'")
endif()
