# `hallu data` end to end (label "unit"): --verify names a corrupt image and
# exits 1; pack + info round-trips a synthetic split; --help shows defaults.
set(_dc_dir ${CMAKE_BINARY_DIR}/data_cli)
set(_dc_hallu $<TARGET_FILE:hallu_cli>)

add_test(NAME data_cli_verify_bad COMMAND sh -c "\
rm -rf '${_dc_dir}/bad' && mkdir -p '${_dc_dir}/bad/cls' && printf 'not an image' > '${_dc_dir}/bad/cls/broken.jpg' || exit 1; \
out=$('${_dc_hallu}' data info --data 'imagefolder:${_dc_dir}/bad' --verify 2>&1); rc=$?; printf '%s\\n' \"$out\"; \
[ $rc -eq 1 ] || { echo \"expected exit 1, got $rc\"; exit 1; }; \
printf '%s\\n' \"$out\" | grep -q 'bad image 0: .*cls/broken.jpg: .*not a JPEG or PNG' || exit 1; \
'${_dc_hallu}' data info --data 'imagefolder:${_dc_dir}/bad' --verify --skip-bad >/dev/null 2>&1 || exit 1; \
'${_dc_hallu}' data info --data 'nosuch:${_dc_dir}' 2>&1 | grep -q \"unknown dataset kind 'nosuch'\"")

add_test(NAME data_cli_pack COMMAND sh -c "\
mkdir -p '${_dc_dir}' && '${_dc_hallu}' data pack --data synthetic:40 --split test --out '${_dc_dir}/syn.hpk' || exit 1; \
out=$('${_dc_hallu}' data info --data 'packed:${_dc_dir}/syn.hpk' --split test --verify) || exit 1; printf '%s\\n' \"$out\"; \
printf '%s\\n' \"$out\" | grep -q '^split test: 10 images$' && printf '%s\\n' \"$out\" | grep -q 'verify: 10 images decoded, 0 bad' && \
printf '%s\\n' \"$out\" | grep -q 'image size: 32x32' && ! '${_dc_hallu}' data info --data 'packed:${_dc_dir}/syn.hpk' --split train 2>/dev/null")

add_test(NAME data_cli_help COMMAND sh -c "\
'${_dc_hallu}' data info --help | grep -q 'default: 5000' && '${_dc_hallu}' data pack --help | grep -q -- '--size N' && \
'${_dc_hallu}' --help | grep -q 'data '")
set_tests_properties(data_cli_verify_bad data_cli_pack data_cli_help PROPERTIES LABELS unit TIMEOUT 120)
