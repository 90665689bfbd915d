# io interop with PyTorch/NumPy: python writes a safetensors file that C checks,
# C writes safetensors + npy files that python checks (tools/safetensors_io.py, numpy.load).
set(_io_dir ${CMAKE_BINARY_DIR}/io_interop)

add_test(NAME io_interop_py_write
  COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/check_safetensors_interop.py write ${_io_dir})
set_tests_properties(io_interop_py_write PROPERTIES LABELS parity FIXTURES_SETUP io_py_files TIMEOUT 120)

add_executable(parity_safetensors ${CMAKE_CURRENT_SOURCE_DIR}/parity_safetensors.c)
target_include_directories(parity_safetensors PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(parity_safetensors PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
target_link_libraries(parity_safetensors PRIVATE hallu)
add_test(NAME parity_safetensors COMMAND parity_safetensors ${_io_dir})
set_tests_properties(parity_safetensors PROPERTIES LABELS parity TIMEOUT 120
  FIXTURES_REQUIRED io_py_files FIXTURES_SETUP io_c_files)

add_test(NAME io_interop_py_check
  COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/check_safetensors_interop.py check ${_io_dir})
set_tests_properties(io_interop_py_check PROPERTIES LABELS parity FIXTURES_REQUIRED "io_py_files;io_c_files" TIMEOUT 120)
