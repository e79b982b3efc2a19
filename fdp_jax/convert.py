"""Weight import from the official PyTorch FDP (``reference_compat`` structure).

``from_torch_state_dict(state_dict)`` maps PyTorch names to the Flax tree by a rename (``a.b.3.c`` ->
``a/b_3/c``) plus layout changes: Conv2d OIHW -> HWIO, Conv3d (O, I, kH, kW, kD) -> (kH, kW, kD, I, O),
Linear (out, in) -> (in, out), BatchNorm weight/bias -> params scale/bias and running_mean/var ->
batch_stats mean/var (``num_batches_tracked`` is dropped).
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from fdp_jax.configs import get_model_config
from fdp_jax.models import build_model, dummy_clips

_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def _module_path(parts: list[str]) -> list[str]:
    path: list[str] = []
    for p in parts:
        if p.isdigit() and path:
            path[-1] = f"{path[-1]}_{p}"
        else:
            path.append(p)
    return path


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _set(tree: dict, path: list[str], value: np.ndarray, name: str) -> None:
    node = tree
    for p in path[:-1]:
        node = node.setdefault(p, {})
    if path[-1] in node:
        raise ValueError(f"state_dict entry {name!r} maps to an already filled Flax leaf {'/'.join(path)}")
    node[path[-1]] = value


def from_torch_state_dict(state_dict: Mapping[str, Any], config: Any = None, *,
                          check: bool = True) -> dict:
    """PyTorch ``FDP().state_dict()`` (name -> array/tensor) -> Flax ``{'params', 'batch_stats'}`` (float32).

    With ``check`` the result is compared with the structure and shapes of ``config`` (default: full
    ``reference_compat``); a mismatch raises ``ValueError`` naming the offending entries.
    """
    bn_modules = {k.rsplit(".", 1)[0] for k in state_dict if k.endswith(".running_mean")}
    variables: dict = {"params": {}, "batch_stats": {}}
    for name, value in state_dict.items():
        module, leaf = name.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            continue
        array = _to_numpy(value)
        path = _module_path(module.split("."))
        if module in bn_modules:
            if leaf not in _BN_LEAVES:
                raise ValueError(f"unexpected BatchNorm entry {name!r}")
            collection, flax_leaf = _BN_LEAVES[leaf]
            _set(variables[collection], path + [flax_leaf], array.astype(np.float32), name)
            continue
        if leaf not in ("weight", "bias"):
            raise ValueError(f"unexpected state_dict entry {name!r} (leaf {leaf!r})")
        if array.ndim == 5:  # Conv3d: stored flat on the parent module as conv3d_kernel / conv3d_bias
            _set(variables["params"], path[:-1] + [f"{path[-1]}_kernel"],
                 np.transpose(array, (2, 3, 4, 1, 0)).astype(np.float32), name)
        elif (leaf == "bias" and f"{module}.weight" in state_dict
              and _to_numpy(state_dict[f"{module}.weight"]).ndim == 5):
            _set(variables["params"], path[:-1] + [f"{path[-1]}_bias"], array.astype(np.float32), name)
        elif leaf == "bias":
            _set(variables["params"], path + ["bias"], array.astype(np.float32), name)
        elif array.ndim == 4:  # Conv2d OIHW -> HWIO
            _set(variables["params"], path + ["kernel"], np.transpose(array, (2, 3, 1, 0)).astype(np.float32), name)
        elif array.ndim == 2:  # Linear (out, in) -> (in, out)
            _set(variables["params"], path + ["kernel"], array.T.astype(np.float32), name)
        else:
            raise ValueError(f"state_dict entry {name!r} has unsupported shape {array.shape}")
    if check:
        check_structure(variables, get_model_config("full", "reference_compat") if config is None else config)
    return variables


def check_structure(variables: dict, config: Any) -> None:
    """Raises ``ValueError`` listing missing/unexpected/mis-shaped leaves against ``config``'s model."""
    model = build_model(config)
    expected = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, dummy_clips(model.spec, 1)))
    want = {"/".join(str(getattr(k, "key", k)) for k in p): tuple(v.shape)
            for p, v in jax.tree_util.tree_leaves_with_path(dict(expected))}
    got = {"/".join(str(getattr(k, "key", k)) for k in p): tuple(np.shape(v))
           for p, v in jax.tree_util.tree_leaves_with_path(variables)}
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    shapes = sorted(f"{k}: got {got[k]}, want {want[k]}" for k in set(want) & set(got) if want[k] != got[k])
    if missing or unexpected or shapes:
        raise ValueError("converted weights do not match the FDP model: "
                         f"missing {missing[:10]} ({len(missing)}), unexpected {unexpected[:10]} "
                         f"({len(unexpected)}), shape mismatches {shapes[:10]} ({len(shapes)})")


def load_torch_checkpoint(path: str, config: Any = None) -> dict:
    """Loads an official ``.pth`` (a state_dict, a ``{'state_dict': ...}`` dict or a pickled module) and
    converts it. Needs the optional ``torch`` extra (imported lazily)."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_torch_checkpoint needs PyTorch: pip install 'fdp-dkt-jax[torch]'") from e
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    return from_torch_state_dict(state, config)
