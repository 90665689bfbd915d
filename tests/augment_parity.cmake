# Augmentation parity with torchvision 0.14 (label "parity"): tools/ref_augment.py
# writes fixed-parameter reference outputs on real CIFAR-10 images (generated
# images when the archive is absent); parity_augment compares hallu's ops.
set(HALLU_AUG_REF ${CMAKE_BINARY_DIR}/augment_parity/augment_ref.bin)
add_test(NAME augment_parity_ref
  COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/ref_augment.py
          --archive ${CMAKE_SOURCE_DIR}/../shared/data/cifar10-jpeg.tar.gz --out ${HALLU_AUG_REF})
set_tests_properties(augment_parity_ref PROPERTIES FIXTURES_SETUP augment_ref LABELS parity TIMEOUT 600)

add_executable(parity_augment ${CMAKE_CURRENT_SOURCE_DIR}/parity_augment.c)
target_include_directories(parity_augment PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(parity_augment PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE
  HALLU_BINARY_DIR="${CMAKE_BINARY_DIR}")
target_link_libraries(parity_augment PRIVATE hallu)
add_test(NAME parity_augment COMMAND parity_augment ${HALLU_AUG_REF})
set_tests_properties(parity_augment PROPERTIES FIXTURES_REQUIRED augment_ref LABELS parity TIMEOUT 600)
