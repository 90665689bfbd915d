# --precision (issue 28), tests/precision_check.py: the named error on a CPU
# without bf16 instructions (tested by capping oneDNN's ISA) and bit-exact
# bf16 resume; test_conv_bf16 (unit) checks the bf16 convolutions where the
# CPU has them and skips (77) where it does not; parity_ssl_bf16
# (ssl_parity.cmake) compares a bf16 step with PyTorch's autocast.
add_test(NAME precision_checks
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/precision_check.py $<TARGET_FILE:hallu_cli>
                 ${CMAKE_CURRENT_BINARY_DIR}/precision_runs)
set_tests_properties(precision_checks PROPERTIES LABELS "cli" TIMEOUT 300)
set_tests_properties(test_conv_bf16 PROPERTIES SKIP_RETURN_CODE 77)
# The bf16 Winograd convolutions of CPUs without AMX, also run where the CPU
# has AMX: oneDNN's ISA capped below it (test_conv_bf16 then requires them).
# Its layers are small, so they take the per-thread block passes; the second
# run forces the chunked passes that layers of more channels take.
add_test(NAME test_conv_bf16_winograd COMMAND test_conv_bf16)
set_tests_properties(test_conv_bf16_winograd PROPERTIES LABELS unit TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16;HALLU_TEST_EXPECT_WINOGRAD=1")
add_test(NAME test_conv_bf16_winograd_chunks COMMAND test_conv_bf16)
set_tests_properties(test_conv_bf16_winograd_chunks PROPERTIES LABELS unit TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16;HALLU_TEST_EXPECT_WINOGRAD=1;HALLU_CPU_WINOGRAD=chunks")
