# The CUDA backend's tests (label "gpu"): the same tests again with
# HALLU_TEST_DEVICE=cuda (C tests, tests/test_backend.h) and HALLU_DEVICE=cuda
# (the CLI's default --device), as tests/isolated.cmake does for cpu-isolated;
# same fixtures, reference outputs and tolerances. Every one is skipped (exit
# 77, SKIP_RETURN_CODE) where no CUDA device is usable or hallu was built
# without the CUDA backend: C tests exit 77 when the backend cannot be created
# (HALLU_ERR_UNSUPPORTED), the Python-driven ones run behind tests/gpu_run.sh,
# which asks gpu_probe first. `ctest -L gpu` runs them; `ctest -LE gpu` leaves
# them out.
set(_gpu_env "HALLU_TEST_DEVICE=cuda;HALLU_DEVICE=cuda")

# gpu_probe [DEVICE]: exit 0 when the CUDA backend can be created, 77 when not.
add_executable(gpu_probe ${CMAKE_CURRENT_SOURCE_DIR}/gpu_probe.c)
target_link_libraries(gpu_probe PRIVATE hallu)
set(_gpu_run sh ${CMAKE_CURRENT_SOURCE_DIR}/gpu_run.sh $<TARGET_FILE:gpu_probe>)

# hallu_gpu_variant(NAME LABEL FIXTURES TIMEOUT COMMAND...): NAME_gpu, labels "gpu;gpu_LABEL".
function(hallu_gpu_variant name label fixtures timeout)
  add_test(NAME ${name}_gpu COMMAND ${ARGN})
  set_tests_properties(${name}_gpu PROPERTIES LABELS "gpu;gpu_${label}" ENVIRONMENT "${_gpu_env}"
                       SKIP_RETURN_CODE 77 TIMEOUT ${timeout})
  if(fixtures)
    set_tests_properties(${name}_gpu PROPERTIES FIXTURES_REQUIRED "${fixtures}")
  endif()
endfunction()

# Every op of the backend table against the cpu backend (tests/test_backend_ops.c).
add_test(NAME backend_ops_cuda COMMAND test_backend_ops cuda)
set_tests_properties(backend_ops_cuda PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)

# Unit tests that build models, methods, optimizers and evaluations (isolated.cmake's list).
foreach(t test_ssl_losses test_ssl_moco test_bn_groups test_optim test_eval_features test_eval_knn test_eval_probe)
  hallu_gpu_variant(${t} unit "" 600 ${t})
endforeach()

# Parity against PyTorch: every SSL configuration, the ResNets, the optimizers.
hallu_gpu_variant(parity_ssl parity ssl_ref 900 parity_ssl ${CMAKE_BINARY_DIR}/ssl_parity)
hallu_gpu_variant(parity_resnet parity ref_resnet 900 parity_resnet ${CMAKE_BINARY_DIR}/ref/resnet)
hallu_gpu_variant(parity_optim parity optim_ref 300 parity_optim ${CMAKE_BINARY_DIR}/optim_ref.safetensors)

# Training: bit-exact resume on the GPU (SimCLR, MoCo v2), --init and export.
hallu_gpu_variant(train_resume_bit_exact train "" 1200 ${_gpu_run}
  ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/resume_runs_gpu)
hallu_gpu_variant(train_resume_moco_bit_exact train "" 1200 ${_gpu_run}
  ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli>
  ${CMAKE_BINARY_DIR}/resume_runs_moco_gpu mocov2)
hallu_gpu_variant(train_init train "" 600 ${_gpu_run}
  ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/init_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/init_runs_gpu)

# The evaluation commands: knn, linear, features.
foreach(what features knn linear)
  hallu_gpu_variant(eval_cli_${what} cli eval_cli_weights 600 ${_gpu_run}
    ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/eval_cli_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/eval_cli_gpu
    ${CMAKE_BINARY_DIR}/eval_cli/resnet18_cifar.safetensors ${what})
endforeach()

# Without a usable GPU (this one runs in CI, label "cli"): `hallu train --device
# cuda` fails with a message naming the reason; skipped where a GPU is usable.
add_test(NAME cuda_device_error
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cuda_device_error.sh $<TARGET_FILE:gpu_probe> $<TARGET_FILE:hallu_cli>
                 ${CMAKE_BINARY_DIR}/cuda_device_error)
set_tests_properties(cuda_device_error PROPERTIES LABELS cli SKIP_RETURN_CODE 77 TIMEOUT 120
                     ENVIRONMENT "HALLU_DEVICE=;HALLU_TEST_DEVICE=")
