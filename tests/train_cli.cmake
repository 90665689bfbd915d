# hallu train --config: a run's config.json reproduces it; flags override; bad files are rejected.
add_test(NAME train_config_file
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/config_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/config_runs)
set_tests_properties(train_config_file PROPERTIES LABELS train TIMEOUT 600)

# --save-every / --keep-best: the periodic and best checkpoints, also across a resume.
add_test(NAME train_checkpoint_files
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_files_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/checkpoint_runs)
set_tests_properties(train_checkpoint_files PROPERTIES LABELS train TIMEOUT 600)
