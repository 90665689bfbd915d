# Data parallelism over MPI ranks (label mpi): tests/dist_check.py runs N
# ranks against one process; tests/dist_faults.py the fault paths. They need
# OpenMPI's mpirun (Debian openmpi-bin) and a build with the MPI communicator.
if(MPI_C_FOUND)
  find_program(HALLU_MPIRUN mpirun)
endif()
if(MPI_C_FOUND AND HALLU_MPIRUN)
  add_test(NAME dist_equivalence
           COMMAND ${HALLU_PY} ${CMAKE_CURRENT_SOURCE_DIR}/dist_check.py $<TARGET_FILE:hallu_cli>
                   ${CMAKE_CURRENT_BINARY_DIR}/dist_equivalence)
  set_tests_properties(dist_equivalence PROPERTIES LABELS "mpi" TIMEOUT 900 RUN_SERIAL TRUE)
endif()
