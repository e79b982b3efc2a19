"""Command-line parsing for the absl mains: a bad ``--config`` file or ``--config.x=v`` override is one clear
error line (exit code 2, no traceback) that names the flag and, for an unknown field, the close field names.

    app.run(main, flags_parser=cli.parse_flags)
    results = cli.exit_on_user_error("launch.dkt", train_and_evaluate, config, workdir)

User mistakes (``USER_ERRORS``: bad config values, dataset problems, a busy or unwritable workdir, a diverged
run) end the same way: one ``<prog>: error: ...`` line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import difflib
import os
import re
import runpy
import sys
from typing import Any, Callable, TypeVar

from absl import flags

from datasets.registry import DatasetError
from dkt_jax.stem.errors import ClassificationError
from launch.runtime.guard import NonFiniteError
from launch.runtime.workdir import WorkdirError

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config value, found before any data work; the message names the field."""


USER_ERRORS = (ConfigError, DatasetError, WorkdirError, NonFiniteError, FileNotFoundError, ClassificationError)


def exit_on_user_error(prog: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``; a ``USER_ERRORS`` exception becomes ``<prog>: error: <message>`` and exit 1."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as e:
        sys.exit(f"{prog}: error: {e}")

_OVERRIDE = re.compile(r"^--(?P<flag>[A-Za-z_]\w*)\.(?P<path>[\w.]+)(=|$)")


def config_fields(config: Any, prefix: str = "") -> list[str]:
    """Every dotted field name of a ConfigDict (or dict), nested fields included."""
    items = config.items() if hasattr(config, "items") else []
    out = []
    for key, value in items:
        name = f"{prefix}{key}"
        out.append(name)
        if hasattr(value, "items"):
            out += config_fields(value, name + ".")
    return out


def _load_config(argv: list[str], flag: str) -> Any:
    """The config named by ``--<flag>=PATH[:arg]`` in ``argv``, or None."""
    for arg in argv:
        if arg.startswith(f"--{flag}="):
            path, _, config_arg = arg.split("=", 1)[1].partition(":")
            get_config = runpy.run_path(path).get("get_config")
            return get_config(config_arg) if config_arg else get_config()
    return None


def unknown_override_message(argv: list[str]) -> str | None:
    """'unknown field' messages for the ``--config.x`` overrides of ``argv`` that name no config field."""
    messages = []
    for arg in argv:
        match = _OVERRIDE.match(arg)
        if not match:
            continue
        try:
            config = _load_config(argv, match["flag"])
        except Exception:  # noqa: BLE001 - a broken config file is reported by the caller's message
            return None
        if config is None:
            continue
        fields = config_fields(config)
        if match["path"] not in fields:
            close = difflib.get_close_matches(match["path"], fields, n=5, cutoff=0.6)
            hint = f"; close names: {', '.join(close)}" if close else ""
            messages.append(f"--{match['flag']}.{match['path']}: unknown config field {match['path']!r}{hint}")
    return "; ".join(messages) or None


def parse_flags(argv: list[str]) -> list[str]:
    """absl ``flags_parser`` for the mains (see the module docstring)."""
    prog = os.path.basename(argv[0]) if argv else "launch"
    try:
        rest = flags.FLAGS(argv)
        for name in flags.FLAGS:  # ml_collections defers a config file's load error to the first use
            value = flags.FLAGS[name].value
            if type(value).__name__ == "_ErrorConfig":
                value.to_dict()
        return rest
    except flags.Error as e:  # an unparsable value, a missing required flag...
        message = str(e)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # ml_collections: unknown field / bad type
        message = unknown_override_message(argv) or str(e).strip("'\"")
    except OSError as e:  # ml_collections: the config file cannot be loaded
        message = str(e).replace("config_config", "--config").splitlines()
        message = " ".join(part.strip() for part in message if part.strip())
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)
