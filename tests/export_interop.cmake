# hallu-exported weights load into torchvision (strict) and give the same features.
add_executable(export_features ${CMAKE_CURRENT_SOURCE_DIR}/export_features.c)
target_include_directories(export_features PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(export_features PRIVATE hallu)
add_test(NAME export_write COMMAND export_features ${CMAKE_BINARY_DIR}/ref_export)
set_tests_properties(export_write PROPERTIES FIXTURES_SETUP export_files LABELS parity TIMEOUT 300)
add_test(NAME export_torchvision COMMAND ${HALLU_PY} ${CMAKE_SOURCE_DIR}/tools/check_export.py ${CMAKE_BINARY_DIR}/ref_export)
set_tests_properties(export_torchvision PROPERTIES FIXTURES_REQUIRED export_files LABELS parity TIMEOUT 300)
