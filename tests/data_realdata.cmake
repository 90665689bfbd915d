# Real-data checks of the dataset readers (label "realdata"): the shared CIFAR-10
# JPEG and Tiny ImageNet subset archives are unpacked once into the build folder
# (fixture), then `hallu data info --verify` must decode every image and report
# the known split sizes, class counts and per-class counts (Tiny ImageNet's val
# labels come from val_annotations.txt: 50 images per class). Skipped (exit 77)
# when the archives are absent.
set(HALLU_SHARED_DATA ${CMAKE_SOURCE_DIR}/../shared/data)
set(_rd_dir ${CMAKE_BINARY_DIR}/realdata)
set(_rd_cifar ${HALLU_SHARED_DATA}/cifar10-jpeg.tar.gz)
set(_rd_tiny ${HALLU_SHARED_DATA}/tiny-imagenet-200-subset.tar.gz)

# A marker file written after a complete unpack makes the fixture idempotent.
add_test(NAME data_realdata_unpack COMMAND sh -c "\
test -f '${_rd_cifar}' && test -f '${_rd_tiny}' || exit 77; mkdir -p '${_rd_dir}' || exit 1; \
if [ ! -f '${_rd_dir}/cifar10/.unpacked' ]; then tar xzf '${_rd_cifar}' -C '${_rd_dir}' && \
touch '${_rd_dir}/cifar10/.unpacked' || exit 1; fi; \
if [ ! -f '${_rd_dir}/tiny-imagenet-200/.unpacked' ]; then tar xzf '${_rd_tiny}' -C '${_rd_dir}' && \
touch '${_rd_dir}/tiny-imagenet-200/.unpacked' || exit 1; fi")
set_tests_properties(data_realdata_unpack PROPERTIES LABELS realdata FIXTURES_SETUP data_realdata
  SKIP_RETURN_CODE 77 TIMEOUT 600)

# Runs `hallu data info --verify` and requires every pattern (grep -E, one per line).
function(hallu_data_realdata_test name spec)
  set(_checks "")
  foreach(p ${ARGN})
    string(APPEND _checks "printf '%s\\n' \"$out\" | grep -Eq '${p}' || { echo 'missing: ${p}'; exit 1; }; ")
  endforeach()
  add_test(NAME ${name} COMMAND sh -c "\
test -d '${_rd_dir}' || exit 77; out=$('$<TARGET_FILE:hallu_cli>' data info --data '${spec}' --verify); \
rc=$?; printf '%s\\n' \"$out\"; [ $rc -eq 0 ] || exit 1; ${_checks}")
  set_tests_properties(${name} PROPERTIES LABELS realdata FIXTURES_REQUIRED data_realdata
    SKIP_RETURN_CODE 77 TIMEOUT 600)
endfunction()

hallu_data_realdata_test(data_realdata_cifar10 imagefolder:${_rd_dir}/cifar10
  "^split train: 50000 images$" "^split test: 10000 images$"
  "classes: 10 \\(airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck\\)"
  "images per class: min 5000 .*max 5000" "images per class: min 1000 .*max 1000"
  "image size: 32x32" "verify: 50000 images decoded, 0 bad" "verify: 10000 images decoded, 0 bad")

hallu_data_realdata_test(data_realdata_tinyimagenet tinyimagenet:${_rd_dir}/tiny-imagenet-200
  "^split train: 20000 images$" "^split test: 10000 images$" "classes: 200 \\(n01443537, "
  "images per class: min 100 .*max 100" "images per class: min 50 .*max 50"
  "image size: 64x64" "verify: 20000 images decoded, 0 bad" "verify: 10000 images decoded, 0 bad")
