# hallu train's closing lines: a short run on synthetic data ends with its gain over the untrained kNN floor;
# one started from its weights with lr 3 ends below that floor and warns last, naming
# both numbers and what helps. --crop rrc|ccrop: recorded, refused when bad.
add_test(NAME train_messages
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/train_messages_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/messages_runs)
set_tests_properties(train_messages PROPERTIES LABELS train TIMEOUT 600)
