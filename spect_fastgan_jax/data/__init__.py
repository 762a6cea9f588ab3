"""SPECT slice data: the simulated default set, users' scans, one on-disk format.

Entry points:
  load_training_set(data_config, log) -> SliceDataset   slices of the run's levels
  build_full_set(data_config, log) -> SliceDataset      every slice of the source
  simulate_to_workdir(data_config, workdir, log)        --mode=simulate's files
  write_contact_sheet(ds, path)                         levels x patterns PNG
"""

from spect_fastgan_jax.data.contact_sheet import write_contact_sheet
from spect_fastgan_jax.data.dataset import DataError, SliceDataset, load, select_levels
from spect_fastgan_jax.data.source import (build_full_set, load_training_set, simulate_to_workdir,
                                           simulated_set)

__all__ = ["DataError", "SliceDataset", "build_full_set", "load", "load_training_set",
           "select_levels", "simulate_to_workdir", "simulated_set", "write_contact_sheet"]
