# Interrupted (SIGKILL, SIGINT, internal stop) + resumed runs equal an uninterrupted one, bit for bit.
add_test(NAME train_resume_bit_exact
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli> ${CMAKE_BINARY_DIR}/resume_runs)
set_tests_properties(train_resume_bit_exact PROPERTIES LABELS train TIMEOUT 1200)
# MoCo v2 + Hallucinator with shuffled BN groups: queue, key encoder and shuffle state
# across interruptions. Label "sanitize": scripts/test.sh also runs its SIGINT case
# under ASan+UBSan (HALLU_SANITIZE builds pass --sigint-only to keep that build quick).
if(HALLU_SANITIZE)
  set(_resume_moco_mode --sigint-only)
endif()
add_test(NAME train_resume_moco_bit_exact
         COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/resume_check.py $<TARGET_FILE:hallu_cli>
                 ${CMAKE_BINARY_DIR}/resume_runs_moco mocov2 ${_resume_moco_mode})
set_tests_properties(train_resume_moco_bit_exact PROPERTIES LABELS "train;sanitize" TIMEOUT 1200)
