"""The archive catalog: the ingested dataset, the NFFA HDF5 files and classify predictions in one
searchable database (`semhpc catalog build` / `query`)."""
