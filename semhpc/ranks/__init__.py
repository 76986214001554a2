"""Rank coordination over mpi4py for the commands whose ranks share files, not gradients
(`semhpc ingest`, `semhpc hdf5`, `semhpc classify`).

`world`: which rank this process is, and waiting without stealing cores (one POLL_SECONDS).
`jobs`: how a job's ranks share work, report progress, agree on errors and exit codes.
Training and benchmarks talk through Horovod instead (semhpc/runtime/distributed.py).
"""
