# Data parallelism over MPI ranks (label mpi; mpirun --allow-run-as-root
# --oversubscribe, as CI runs as root). They need OpenMPI's mpirun (Debian
# openmpi-bin) and a build with the MPI communicator.
#   dist_equivalence  2 ranks against one process (tests/dist_check.py)
#   dist_two_hosts    the same over TCP between two network namespaces joined
#                     by a veth pair (tests/netns_mpirun.sh; needs root, else
#                     skipped), which must also give the loopback run's bits
#   dist_faults       kill -9, SIGINT + resume, uneven data, missing data,
#                     cpu-isolated ranks (tests/dist_faults.py)
if(MPI_C_FOUND)
  find_program(HALLU_MPIRUN mpirun)
endif()
if(MPI_C_FOUND AND HALLU_MPIRUN)
  add_test(NAME dist_equivalence
           COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/dist_check.py $<TARGET_FILE:hallu_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/dist_equivalence)
  add_test(NAME dist_two_hosts
           COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/dist_check.py $<TARGET_FILE:hallu_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/dist_two_hosts --only simclr+hal --also-loopback --no-floor
                   --launcher "${CMAKE_CURRENT_SOURCE_DIR}/netns_mpirun.sh --timeout 600 --")
  add_test(NAME dist_faults
           COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/dist_faults.py $<TARGET_FILE:hallu_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/dist_faults)
  set_tests_properties(dist_equivalence dist_two_hosts dist_faults PROPERTIES LABELS "mpi" TIMEOUT 1200)
  set_tests_properties(dist_two_hosts PROPERTIES SKIP_RETURN_CODE 77)
else()
  message(STATUS "hallu: no mpirun or MPI: the mpi tests are not built")
endif()
