"""JAX's persistent compilation cache for the launchers: a re-run, the next fold of another process, or the
next run with the same shapes loads compiled programs from disk instead of compiling them again.

    python -m launch.fdp ... [--compile_cache_dir=DIR]    # '' turns it off

The folder is, in order: ``--compile_cache_dir``; ``$JAX_COMPILATION_CACHE_DIR``; ``$XDG_CACHE_HOME`` (or
``~/.cache``) ``/fdp_dkt_jax/jax``. Programs that compile in under ``min_compile_secs`` are not stored. The
cache is keyed by the program, the jax/jaxlib versions and the device kind, so a stale entry is never used;
deleting the folder is always safe.
"""
from __future__ import annotations

import os

from absl import flags, logging

COMPILE_CACHE_DIR = flags.DEFINE_string(
    "compile_cache_dir", None, "JAX persistent compilation cache folder ('' = off; default "
    "$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/fdp_dkt_jax/jax or ~/.cache/fdp_dkt_jax/jax).")
DEFAULT_MIN_COMPILE_SECS = 1.0


def default_cache_dir() -> str:
    """``$JAX_COMPILATION_CACHE_DIR``, else ``$XDG_CACHE_HOME/fdp_dkt_jax/jax`` (``~/.cache`` when unset)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fdp_dkt_jax", "jax")


def enable_compilation_cache(cache_dir: str | None = None, min_compile_secs: float | None = None) -> str | None:
    """Turns the persistent cache on in ``cache_dir`` (None: the ``--compile_cache_dir`` flag if parsed, else
    :func:`default_cache_dir`; '' = off). ``min_compile_secs`` None: ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``,
    else 1 s. Returns the folder used, or None when off or not writable (logged)."""
    import jax

    if min_compile_secs is None:
        min_compile_secs = float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                                                DEFAULT_MIN_COMPILE_SECS))

    if cache_dir is None:
        flag = COMPILE_CACHE_DIR.value if flags.FLAGS.is_parsed() else None
        cache_dir = default_cache_dir() if flag is None else flag
    if not cache_dir:
        return None
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        logging.warning("Compilation cache off: cannot create %s (%s).", cache_dir, e)
        return None
    if not os.access(cache_dir, os.W_OK):
        logging.warning("Compilation cache off: %s is not writable.", cache_dir)
        return None
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    logging.info("JAX persistent compilation cache: %s (programs compiling >= %.1f s).", cache_dir,
                 min_compile_secs)
    return cache_dir
