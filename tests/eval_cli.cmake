# End-to-end checks of `hallu features|knn|linear|plot` (label "cli"): a
# hallu-initialised ResNet-18 is written as torchvision-named safetensors once
# (fixture); tests/eval_cli_check.py runs the commands on the built-in synthetic
# set and checks their outputs with numpy / xml.etree, usage errors (exit 2) and
# runtime errors (exit 1).
set(_ec_dir ${CMAKE_BINARY_DIR}/eval_cli)
add_executable(eval_make_weights ${CMAKE_CURRENT_SOURCE_DIR}/eval_make_weights.c)
target_link_libraries(eval_make_weights PRIVATE hallu)
add_test(NAME eval_cli_weights COMMAND sh -c "mkdir -p '${_ec_dir}' && '$<TARGET_FILE:eval_make_weights>' '${_ec_dir}/resnet18_cifar.safetensors'")
set_tests_properties(eval_cli_weights PROPERTIES FIXTURES_SETUP eval_cli_weights LABELS cli TIMEOUT 120)
foreach(what usage features knn linear plot)
  add_test(NAME eval_cli_${what}
    COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/eval_cli_check.py $<TARGET_FILE:hallu_cli> ${_ec_dir}
            ${_ec_dir}/resnet18_cifar.safetensors ${what})
  set_tests_properties(eval_cli_${what} PROPERTIES FIXTURES_REQUIRED eval_cli_weights LABELS cli TIMEOUT 600)
endforeach()
