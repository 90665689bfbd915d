# The evaluation code on the cpu-isolated backend (label "isolated"): the eval
# unit tests with HALLU_TEST_DEVICE and the eval CLI checks with HALLU_DEVICE,
# so that a host access to device memory anywhere in kNN, feature extraction,
# the linear probe or the params files faults (and the fault hook's failures
# become named errors).
foreach(name test_eval_knn test_eval_features test_eval_probe)
  add_test(NAME ${name}_isolated COMMAND ${name})
  set_tests_properties(${name}_isolated PROPERTIES ENVIRONMENT HALLU_TEST_DEVICE=cpu-isolated
                       LABELS "unit;isolated" TIMEOUT 600)
endforeach()
foreach(what usage features knn linear)
  add_test(NAME eval_cli_${what}_isolated
    COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/eval_cli_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/eval_cli
            ${CMAKE_BINARY_DIR}/eval_cli/resnet18_cifar.safetensors ${what})
  set_tests_properties(eval_cli_${what}_isolated PROPERTIES ENVIRONMENT HALLU_DEVICE=cpu-isolated
                       FIXTURES_REQUIRED eval_cli_weights LABELS "cli;isolated" TIMEOUT 600)
endforeach()
