# Interrupted (SIGKILL, SIGINT, internal stop) + resumed runs equal an uninterrupted one, bit for bit.
add_test(NAME train_resume_bit_exact
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/resume_runs)
set_tests_properties(train_resume_bit_exact PROPERTIES LABELS train TIMEOUT 1200)
