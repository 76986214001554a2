"""Classification at archive scale (docs/background.md: Classification policy): export a trained run, classify with MPI ranks,
calibrate the confidence policy.

  bundle.py       `semhpc export`: the self-contained, versioned inference bundle
  preprocess.py   file -> model input, as in training
  policy.py       top-5 and the auto / suggest / manual decision
  work.py         input listing, chunks, dynamic distribution over MPI ranks
  runner.py       `semhpc classify`: reader thread + batched inference + chunk commits per rank
  writer.py       part files, resume, the merged predictions.csv/.jsonl and errors.csv
  hdf5_group.py   the `classification` group of the NFFA HDF5 files
  throughput.py   images/s and time per phase
  calibration.py  `semhpc calibrate`: score histograms, P(top correct) vs score, thresholds
"""
