# Self-supervised methods vs PyTorch (label "parity"): tools/ref_ssl.py writes
# one reference file per configuration (SimCLR, MoCo v1/v2, SimSiam, with and
# without the Hallucinator, plus option variants); parity_ssl compares the
# loss, every gradient and a 3-step SGD loss trajectory.
set(_ssl_dir ${CMAKE_BINARY_DIR}/ssl_parity)
add_test(NAME ssl_parity_ref COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/ref_ssl.py ${_ssl_dir})
set_tests_properties(ssl_parity_ref PROPERTIES FIXTURES_SETUP ssl_ref LABELS parity TIMEOUT 2400)

add_executable(parity_ssl ${CMAKE_CURRENT_SOURCE_DIR}/parity_ssl.c)
target_include_directories(parity_ssl PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(parity_ssl PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
target_link_libraries(parity_ssl PRIVATE hallu_testsupport hallu)
add_test(NAME parity_ssl COMMAND parity_ssl ${_ssl_dir})
set_tests_properties(parity_ssl PROPERTIES FIXTURES_REQUIRED ssl_ref LABELS parity TIMEOUT 600)

# bf16 (issue 28): PyTorch's bf16 autocast step on the same weights and views
# (tools/ref_ssl_bf16.py, after ref_ssl.py) against hallu --precision bf16;
# skipped (77) on a CPU without bf16 instructions.
add_test(NAME ssl_parity_bf16_ref COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/ref_ssl_bf16.py ${_ssl_dir})
set_tests_properties(ssl_parity_bf16_ref PROPERTIES FIXTURES_REQUIRED ssl_ref FIXTURES_SETUP ssl_ref_bf16
                     LABELS parity TIMEOUT 600)
add_test(NAME parity_ssl_bf16 COMMAND parity_ssl ${_ssl_dir} --bf16)
set_tests_properties(parity_ssl_bf16 PROPERTIES FIXTURES_REQUIRED "ssl_ref;ssl_ref_bf16" LABELS parity TIMEOUT 600
                     SKIP_RETURN_CODE 77)
