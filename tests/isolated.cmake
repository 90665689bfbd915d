# The same tests again on the cpu-isolated backend (label "isolated"), whose
# device addresses fault when code outside src/backend/ touches them: C tests
# pick their backend from HALLU_TEST_DEVICE (tests/test_backend.h), the CLI's
# --device defaults to HALLU_DEVICE. Same tolerances, same expected results.
set(_iso_env "HALLU_TEST_DEVICE=cpu-isolated;HALLU_DEVICE=cpu-isolated")

# hallu_isolated_variant(NAME LABELS FIXTURES TIMEOUT COMMAND...): NAME_isolated.
function(hallu_isolated_variant name labels fixtures timeout)
  add_test(NAME ${name}_isolated COMMAND ${ARGN})
  set_tests_properties(${name}_isolated PROPERTIES LABELS "isolated;${labels}" ENVIRONMENT "${_iso_env}"
                       TIMEOUT ${timeout})
  if(fixtures)
    set_tests_properties(${name}_isolated PROPERTIES FIXTURES_REQUIRED "${fixtures}")
  endif()
endfunction()

# Unit tests that build models, methods, optimizers and evaluations.
foreach(t test_ssl_losses test_ssl_moco test_bn_groups test_optim test_eval_features test_eval_knn test_eval_probe)
  hallu_isolated_variant(${t} iso_unit "" 600 ${t})
endforeach()

# Parity against PyTorch: every SSL configuration, the ResNets, the optimizers.
hallu_isolated_variant(parity_ssl parity ssl_ref 900 parity_ssl ${CMAKE_BINARY_DIR}/ssl_parity)
hallu_isolated_variant(parity_resnet parity ref_resnet 900 parity_resnet ${CMAKE_BINARY_DIR}/ref/resnet)
hallu_isolated_variant(parity_optim parity optim_ref 300 parity_optim ${CMAKE_BINARY_DIR}/optim_ref.safetensors)

# Training: bit-exact resume (SimCLR, MoCo v2), --init and export.
hallu_isolated_variant(train_resume_bit_exact train "" 1200
  ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/resume_runs_isolated)
hallu_isolated_variant(train_resume_moco_bit_exact train "" 1200
  ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli>
  ${CMAKE_BINARY_DIR}/resume_runs_moco_isolated mocov2)
hallu_isolated_variant(train_init train "" 600
  ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/init_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/init_runs_isolated)

# The evaluation commands: knn, linear, features (and export above).
foreach(what features knn linear)
  hallu_isolated_variant(eval_cli_${what} cli eval_cli_weights 600
    ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/eval_cli_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/eval_cli_isolated
    ${CMAKE_BINARY_DIR}/eval_cli/resnet18_cifar.safetensors ${what})
endforeach()

# cpu and cpu-isolated give the same bits (short runs of three methods, and the
# main job exactly as `hallu train` runs it).
foreach(mode short default)
  add_test(NAME device_equal_${mode}
           COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/device_check.py $<TARGET_FILE:hallu_cli>
                   ${CMAKE_BINARY_DIR}/device_runs_${mode} ${mode})
  set_tests_properties(device_equal_${mode} PROPERTIES LABELS "isolated;train" TIMEOUT 1500)
endforeach()
# The default job twice at full size: alone, as main_job's timing would be on a
# 2-core machine shared with other tests (OpenMP threads crowd each other out).
set_tests_properties(device_equal_default PROPERTIES RUN_SERIAL TRUE)

# A failing op or allocation (test fault hook): a named error, the previous
# checkpoint kept, no temp file, and the run resumes.
add_test(NAME train_fault_hook
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/fault_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/fault_runs)
set_tests_properties(train_fault_hook PROPERTIES LABELS "isolated;train" TIMEOUT 900)

# Only src/backend/ may call oneDNN or a BLAS.
add_test(NAME backend_boundary COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/backend_boundary.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(backend_boundary PROPERTIES LABELS unit TIMEOUT 60)
