"""SPECT slice data: the simulated default set, users' scans, one on-disk format.

Entry points:
  load_split(data_config, log) -> Split                 the run's levels: training and held-out subjects
  load_training_set(data_config, log) -> SliceDataset   the slices the GAN trains on (load_split's train)
  build_full_set(data_config, log) -> SliceDataset      every slice of the source
  simulate_to_workdir(data_config, workdir, log)        --mode=simulate's files
  write_contact_sheet(ds, path)                         levels x patterns PNG
"""

from spect_fastgan_jax.data.contact_sheet import write_contact_sheet
from spect_fastgan_jax.data.dataset import DataError, SliceDataset, load, select_levels
from spect_fastgan_jax.data.source import (Split, build_full_set, load_split, load_training_set,
                                           simulate_to_workdir, simulated_set, split_holdout)

__all__ = ["DataError", "SliceDataset", "Split", "build_full_set", "load", "load_split",
           "load_training_set", "select_levels", "simulate_to_workdir", "simulated_set",
           "split_holdout", "write_contact_sheet"]
