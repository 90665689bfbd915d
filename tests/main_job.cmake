# The README's main job (hallu train with defaults) ends >= 10 kNN points above its untrained floor.
add_test(NAME main_job COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/main_job_check.py
         $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/main_job_run)
set_tests_properties(main_job PROPERTIES LABELS train TIMEOUT 900)
