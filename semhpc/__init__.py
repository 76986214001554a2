"""semhpc: train, benchmark and deploy SEM image classifiers on HPC clusters with Horovod."""

__version__ = "0.1.0"

# The only TensorFlow/Horovod pair this kit supports: Horovod 0.28.1 neither builds nor runs
# against TensorFlow >= 2.16 (Keras 3), see horovod#4290; the project is dormant upstream.
SUPPORTED_TENSORFLOW = "2.15.1"
SUPPORTED_HOROVOD = "0.28.1"
