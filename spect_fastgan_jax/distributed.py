"""Joining a multi-host (multi-process) JAX job: docs/multihost.md.

Every process runs the same command; together they train one run. Each needs the
coordinator's address (process 0's host and a free port), the number of processes
and its own process id, from launch.py's flags, from the environment variables
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or, when none of
the three is given, from a cluster JAX detects itself (SLURM, Open MPI).
"""

from __future__ import annotations

import threading
from typing import Callable, Mapping

from spect_fastgan_jax.errors import ClusterError

ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}
# What JAX reads to detect a cluster's processes by itself (jax._src.clusters).
_AUTO_DETECTED = {"SLURM": ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID"),
                  "Open MPI": ("OMPI_MCA_orte_hnp_uri",)}


def _int(value, name: str, flag: str) -> int:
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ClusterError(f"{flag} must be a whole number, got {value!r}") from None


def cluster_settings(coordinator_address: str | None, num_processes: int | None,
                     process_id: int | None, environ: Mapping[str, str]) -> dict:
  """The arguments of jax.distributed.initialize, from the flags (first) or `environ`.

  Returns {} when none of the three is given anywhere but a cluster JAX detects
  (SLURM, Open MPI) is: JAX then fills them in. Raises ClusterError naming what is
  missing or inconsistent.
  """
  given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
           "process_id": process_id}
  source = {k: f"--{k}" for k, v in given.items() if v is not None}
  for k, var in ENV.items():
    if given[k] is None and environ.get(var, "").strip():
      given[k], source[k] = environ[var].strip(), var
  if not source:
    for cluster, variables in _AUTO_DETECTED.items():
      if all(v in environ for v in variables):
        return {}
    raise ClusterError("--distributed needs --coordinator_address=HOST:PORT, --num_processes=N and "
                       "--process_id=I (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, "
                       "or a SLURM / Open MPI job)")
  missing = [k for k, v in given.items() if v is None]
  if missing:
    raise ClusterError(f"--distributed: {', '.join(f'--{k} ({ENV[k]})' for k in missing)} not given "
                       f"(got {', '.join(f'{source[k]}={given[k]}' for k in source)}); every process "
                       "needs all three")
  n = _int(given["num_processes"], "num_processes", source["num_processes"])
  i = _int(given["process_id"], "process_id", source["process_id"])
  if n < 1:
    raise ClusterError(f"{source['num_processes']} must be >= 1, got {n}")
  if not 0 <= i < n:
    raise ClusterError(f"{source['process_id']} must be in 0..{n - 1} for {n} processes "
                       f"({source['num_processes']}), got {i}")
  address = str(given["coordinator_address"])
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ClusterError(f"{source['coordinator_address']} must be HOST:PORT (process 0's host and a "
                       f"free port), got {address!r}")
  return {"coordinator_address": address, "num_processes": n, "process_id": i}


def initialize(settings: dict, timeout_s: int, on_timeout: Callable[[str], None]) -> None:
  """Joins the job (jax.distributed.initialize); call it before anything starts JAX's backend.

  When the processes have not all joined within `timeout_s` seconds (a peer that
  never started, a wrong address or port), `on_timeout` gets a one-line message
  naming this process, the address and the timeout; it must end the process
  (launch.py prints the message and exits 1). JAX itself would abort the process
  with a stack trace a little later, as it does when a peer dies mid-run (after
  its heartbeat timeout, 100 s) or when one process ends while the others still
  wait for it (after `timeout_s`). On CPU the processes exchange data over TCP (gloo).
  """
  import jax
  if timeout_s < 1:
    raise ClusterError(f"--distributed_timeout must be >= 1 second, got {timeout_s}")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # JAX's preemption service would catch SIGTERM and let training go on; without it
  # SIGTERM (scancel, a pre-empted job) ends the process as it does without --distributed,
  # and the run resumes from its newest complete checkpoint.
  jax.config.update("jax_enable_preemption_service", False)
  who = (f"process {settings['process_id']} of {settings['num_processes']}" if settings
         else "this process")
  where = settings.get("coordinator_address", "the coordinator JAX detected")
  # JAX's own timeout ends the process from C++ (no exception to catch), so a
  # watchdog thread (the wait releases the GIL) reports first.
  watchdog = threading.Timer(timeout_s, lambda: on_timeout(
      f"{who}: not all processes joined the job at {where} within --distributed_timeout={timeout_s} s "
      "(is every process started, with the same coordinator address and number of processes, "
      "and can it reach that host and port?)"))
  watchdog.daemon = True
  watchdog.start()
  try:
    # shutdown_timeout: how long a process that has finished (or failed) waits at exit for
    # the others before all are ended; a process that fails alone thus ends the job.
    jax.distributed.initialize(**settings, initialization_timeout=int(timeout_s) + 60,
                               shutdown_timeout_seconds=int(timeout_s))
    jax.devices()  # the processes exchange their devices here
  finally:
    watchdog.cancel()
