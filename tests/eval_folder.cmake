# `hallu features|knn|linear` on ImageFolder datasets (labels "cli" and "parity"):
# tests/eval_folder_check.py builds small JPEG/PNG folders (from the shared
# CIFAR-10 JPEG archive when present, else PIL-drawn images) and checks native
# size evaluation against torchvision on PIL-decoded images, the train/test,
# train/val and single-split layouts, and mixed-size folders. Uses the weights
# fixture of tests/eval_cli.cmake.
foreach(what native layouts mixed)
  add_test(NAME eval_folder_${what}
    COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/eval_folder_check.py $<TARGET_FILE:hallu_cli>
            ${CMAKE_BINARY_DIR}/eval_folder ${CMAKE_BINARY_DIR}/eval_cli/resnet18_cifar.safetensors
            ${CMAKE_SOURCE_DIR}/../shared/data/cifar10-jpeg.tar.gz ${what})
  set_tests_properties(eval_folder_${what} PROPERTIES FIXTURES_REQUIRED eval_cli_weights LABELS "cli;parity"
    TIMEOUT 600)
endforeach()
