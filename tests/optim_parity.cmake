# optim parity: tools/ref_optim.py runs torch.optim SGD/AdamW, solo-learn's LARS,
# lr_scheduler and clip_grad_norm_; tests/parity_optim.c replays them in C.
set(_optim_ref ${CMAKE_BINARY_DIR}/optim_ref.safetensors)

add_test(NAME optim_ref_generate COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/ref_optim.py ${_optim_ref})
set_tests_properties(optim_ref_generate PROPERTIES LABELS parity FIXTURES_SETUP optim_ref TIMEOUT 300)

add_executable(parity_optim ${CMAKE_CURRENT_SOURCE_DIR}/parity_optim.c)
target_include_directories(parity_optim PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(parity_optim PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
target_link_libraries(parity_optim PRIVATE hallu)
add_test(NAME parity_optim COMMAND parity_optim ${_optim_ref})
set_tests_properties(parity_optim PROPERTIES LABELS parity FIXTURES_REQUIRED optim_ref TIMEOUT 120)
