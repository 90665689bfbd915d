# ResNet-18 memorises a fixed batch with random labels (release build only: too slow under ASan).
add_executable(overfit ${CMAKE_CURRENT_SOURCE_DIR}/overfit.c)
target_include_directories(overfit PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(overfit PRIVATE hallu)
add_test(NAME overfit_fixed_batch COMMAND overfit)
set_tests_properties(overfit_fixed_batch PROPERTIES LABELS train TIMEOUT 900)
