# install_example (label "install"): hallu installs and links like a C library.
# `cmake --install` into a fresh prefix under the build dir, every installed
# header compiles alone, libhallu.so has SONAME libhallu.so.0, the installed CLI
# runs, and examples/pretrain_features.c builds out of tree twice, with
# `pkg-config --cflags --libs hallu` and with CMake's find_package(hallu),
# against the shared library, and writes features of the expected shape.
#
# This file is both the ctest registration (included by tests/CMakeLists.txt)
# and the test itself (run as `cmake -P tests/install.cmake` with -D arguments).
if(NOT CMAKE_SCRIPT_MODE_FILE)
  add_test(NAME install_example COMMAND ${CMAKE_COMMAND}
           -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
           -DWORK_DIR=${CMAKE_BINARY_DIR}/install_example -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
           -DBINDIR=${CMAKE_INSTALL_BINDIR} -DINCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR}
           -DC_COMPILER=${CMAKE_C_COMPILER} -DVERSION=${PROJECT_VERSION} -DVERSION_MAJOR=${PROJECT_VERSION_MAJOR}
           -DSANITIZE=${HALLU_SANITIZE}
           -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(install_example PROPERTIES LABELS install TIMEOUT 600)
  return()
endif()

# ---- script mode -------------------------------------------------------------
cmake_minimum_required(VERSION 3.20)
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR LIBDIR BINDIR INCLUDEDIR C_COMPILER VERSION VERSION_MAJOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "install_example: -D${v}=... missing")
  endif()
endforeach()
set(PREFIX ${WORK_DIR}/prefix)
# A sanitizer build's libhallu.so needs the sanitizer runtimes first in the
# example's link, so the example is built with the same -fsanitize flags.
set(SAN_FLAGS "")
if(SANITIZE)
  set(SAN_FLAGS -fsanitize=address,undefined)
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# Runs a command; fails the test (naming the step) when it exits non-zero.
# The command's output lands in OUT.
macro(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE OUT ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "install_example: ${what} failed (${_rc}):\n${ARGN}\n${OUT}\n${_err}")
  endif()
  message(STATUS "ok: ${what}")
endmacro()

# An example built one way (pkgconfig | cmake, its folder under WORK_DIR) links
# libhallu.so.MAJOR, runs on synthetic:N and writes N features.
macro(check_example exe how n)
  run_step("readelf -d pretrain_features (${how})" readelf -d ${exe})
  if(NOT OUT MATCHES "\\(NEEDED\\)[^\n]*\\[libhallu\\.so\\.${VERSION_MAJOR}\\]")
    message(FATAL_ERROR "install_example: the ${how} build does not link libhallu.so.${VERSION_MAJOR}:\n${OUT}")
  endif()
  run_step("${how} example run" ${exe} synthetic:${n} ${WORK_DIR}/${how}/out 1)
  check_npy(${WORK_DIR}/${how}/out ${n})
endmacro()

# The example writes DIR/features.npy as float32 [N][512] (resnet18) and
# DIR/labels.npy; check the header's shape and the file size.
function(check_npy dir n)
  set(f ${dir}/features.npy)
  if(NOT EXISTS ${f} OR NOT EXISTS ${dir}/labels.npy)
    message(FATAL_ERROR "install_example: ${f} or labels.npy missing")
  endif()
  file(READ ${f} magic LIMIT 8 HEX)           # \x93NUMPY, version 1.0
  file(READ ${f} head OFFSET 10 LIMIT 118)    # the header dict (text)
  if(NOT magic STREQUAL "934e554d50590100" OR
     NOT head MATCHES "^{'descr': '<f4', 'fortran_order': False, 'shape': \\(${n}, 512\\), }")
    message(FATAL_ERROR "install_example: ${f}: header is not float32 (${n}, 512):\n${head}")
  endif()
  file(READ ${f} hlen OFFSET 8 LIMIT 2 HEX)   # u16 little-endian header length
  string(SUBSTRING ${hlen} 0 2 lo)
  string(SUBSTRING ${hlen} 2 2 hi)
  math(EXPR expect "10 + 0x${hi}${lo} + ${n} * 512 * 4")
  file(SIZE ${f} size)
  if(NOT size EQUAL expect)
    message(FATAL_ERROR "install_example: ${f} is ${size} bytes, expected ${expect}")
  endif()
endfunction()

# 1. Install into a fresh prefix.
run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
foreach(f ${LIBDIR}/libhallu.a ${LIBDIR}/libhallu.so ${LIBDIR}/libhallu.so.${VERSION_MAJOR}
          ${LIBDIR}/libhallu.so.${VERSION} ${LIBDIR}/pkgconfig/hallu.pc ${LIBDIR}/cmake/hallu/hallu-config.cmake
          ${LIBDIR}/cmake/hallu/hallu-config-version.cmake ${BINDIR}/hallu ${INCLUDEDIR}/hallu/core.h)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "install_example: ${PREFIX}/${f} was not installed")
  endif()
endforeach()

# 2. SONAME, and the installed CLI runs.
run_step("readelf -d libhallu.so" readelf -d ${PREFIX}/${LIBDIR}/libhallu.so)
if(NOT OUT MATCHES "\\(SONAME\\)[^\n]*\\[libhallu\\.so\\.${VERSION_MAJOR}\\]")
  message(FATAL_ERROR "install_example: no SONAME libhallu.so.${VERSION_MAJOR}:\n${OUT}")
endif()
run_step("hallu version" ${PREFIX}/${BINDIR}/hallu version)
if(NOT OUT MATCHES "hallu ${VERSION}")
  message(FATAL_ERROR "install_example: `hallu version` printed:\n${OUT}")
endif()

# 3. Every installed header is self-contained (compiles alone, public includes only).
file(GLOB headers ${PREFIX}/${INCLUDEDIR}/hallu/*.h)
list(LENGTH headers nh)
if(nh LESS 10)
  message(FATAL_ERROR "install_example: only ${nh} headers installed")
endif()
foreach(h ${headers})
  get_filename_component(name ${h} NAME)
  run_step("${name} compiles alone" ${C_COMPILER} -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only
           -I${PREFIX}/${INCLUDEDIR} -x c ${h})
endforeach()

# 4. pkg-config build against the shared library (rpath to the prefix).
set(ENV{PKG_CONFIG_PATH} ${PREFIX}/${LIBDIR}/pkgconfig)
run_step("pkg-config --cflags --libs hallu" pkg-config --cflags --libs hallu)
separate_arguments(pc_flags UNIX_COMMAND "${OUT}")
set(pc_exe ${WORK_DIR}/pkgconfig/pretrain_features)
file(MAKE_DIRECTORY ${WORK_DIR}/pkgconfig)
run_step("pkg-config build" ${C_COMPILER} -std=c11 -Wall -Wextra -Werror ${SAN_FLAGS} ${SOURCE_DIR}/examples/pretrain_features.c
         ${pc_flags} -Wl,-rpath,${PREFIX}/${LIBDIR} -o ${pc_exe})
check_example(${pc_exe} pkgconfig 64)

# 5. CMake build with find_package(hallu) -> hallu::hallu.
run_step("find_package configure" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples -B ${WORK_DIR}/cmake
         -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release
         "-DCMAKE_C_FLAGS=-Werror ${SAN_FLAGS}")
run_step("find_package build" ${CMAKE_COMMAND} --build ${WORK_DIR}/cmake)
set(cm_exe ${WORK_DIR}/cmake/pretrain_features)
check_example(${cm_exe} cmake 48)
message(STATUS "install_example: all checks passed")
