# ResNet-18 (CIFAR stem) and ResNet-50 (ImageNet stem) against PyTorch.
add_test(NAME ref_resnet_generate
         COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/ref_resnet.py ${CMAKE_BINARY_DIR}/ref/resnet)
set_tests_properties(ref_resnet_generate PROPERTIES FIXTURES_SETUP ref_resnet LABELS parity TIMEOUT 600)

add_executable(parity_resnet ${CMAKE_CURRENT_SOURCE_DIR}/parity_resnet.c)
target_include_directories(parity_resnet PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(parity_resnet PRIVATE hallu_testsupport hallu)
add_test(NAME parity_resnet COMMAND parity_resnet ${CMAKE_BINARY_DIR}/ref/resnet)
set_tests_properties(parity_resnet PROPERTIES FIXTURES_REQUIRED ref_resnet LABELS parity TIMEOUT 600)
