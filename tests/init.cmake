# hallu train --init: exported and torchvision (resnet18, both stems) backbones load bit for
# bit (query and MoCo key encoder, BN statistics included); files that do not fit are refused
# naming a tensor, with nothing written into --out.
add_test(NAME train_init
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/init_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/init_runs)
set_tests_properties(train_init PROPERTIES LABELS train TIMEOUT 600)
