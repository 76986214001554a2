"""Benchmarks and the per-layer profiler behind `semhpc bench` and `semhpc profile`.

Modules: `workload` (model + synthetic batch + the trainer's step), `throughput` (seconds per
batch, images/sec), `sweep` (rank and thread scaling sweeps), `io` (storage read throughput),
`flops` (model FLOPs, matmul peak), `horovod_ranks` (ranks and gathering on rank 0), and the profiler:
`trace` (read TensorFlow profiler traces), `attribution` (split a step into per-layer rows),
`layer_timing` (run profiled training), `layer_timing_report` (tables, summary, files).
"""
