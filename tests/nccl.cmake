# gpu_nccl_smoke (label "gpu"): the nccl communicator's collectives on one GPU
# against host-computed results; built only with the NCCL communicator
# (HALLU_HAVE_NCCL, CMakeLists.txt), skipped (exit 77) where CUDA sees no GPU.
# ctest runs one rank: one GPU cannot hold several NCCL ranks. With N GPUs,
# `mpirun -np N tests/gpu_nccl_smoke` checks N ranks by hand.
if(HALLU_HAVE_NCCL)
  add_executable(gpu_nccl_smoke ${CMAKE_CURRENT_SOURCE_DIR}/gpu_nccl_smoke.c)
  target_include_directories(gpu_nccl_smoke PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  # The CUDA runtime's header for cudaMalloc; libcudart comes with hallu's link interface.
  target_include_directories(gpu_nccl_smoke SYSTEM PRIVATE ${HALLU_CUDA_INCLUDE_DIRS})
  target_link_libraries(gpu_nccl_smoke PRIVATE hallu)
  add_test(NAME gpu_nccl_smoke COMMAND gpu_nccl_smoke)
  set_tests_properties(gpu_nccl_smoke PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
endif()
