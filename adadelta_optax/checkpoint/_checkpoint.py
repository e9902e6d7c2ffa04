"""Checkpoints of params and optimizer state with orbax, verified before anything is returned.

orbax writes the arrays (atomically: a checkpoint directory appears only once complete); beside
them goes a small JSON manifest of the tree (structure with its NamedTuple types, each leaf's
path, shape, dtype and SHA-256). :func:`restore_checkpoint` checks the manifest against the
caller's tree before reading, and the arrays against the hashes after, so a mismatched or
corrupted checkpoint raises a :class:`CheckpointError` and is never half-loaded.

The arrays are stored under names of their own (``leaf_00000``, ... in ``jax.tree.leaves``
order), not under the tree's keys: keys that collide once joined into orbax's names (``{"a.b":
x, "a": {"b": y}}``), or are no strings at all, cannot make a checkpoint that saves but does not
restore. Zero-size leaves (orbax refuses to write them) live in the manifest alone: their shape
and dtype are all they hold. Format 1 checkpoints (the tree's own keys) still restore.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np

from adadelta_optax.core import _validation

FORMAT = 2
_READABLE_FORMATS = (1, 2)


class CheckpointError(ValueError):
  """A checkpoint that cannot be restored into the given tree (corrupted or mismatched)."""


def _leaf_hash(leaf: Any) -> str | None:
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    return None  # multi-host arrays: each process sees only its shards
  array = np.ascontiguousarray(np.asarray(leaf))
  digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
  digest.update(array.tobytes())
  return digest.hexdigest()


def _describe(tree: Any, *, hashes: bool, what: str) -> dict[str, Any]:
  flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in flat:
    if not isinstance(getattr(leaf, "dtype", None), np.dtype) or not hasattr(leaf, "shape"):
      raise TypeError(
        f"{what} leaf at {_validation.path_name(path)} must be an array (or, for the tree given "
        f"to restore_checkpoint, a jax.ShapeDtypeStruct), got {leaf!r:.80} "
        f"({type(leaf).__name__})."
      )
  return {
    "format": FORMAT,
    "treedef": str(treedef),
    "leaves": [
      {
        "path": _validation.path_name(path),
        "shape": list(np.shape(leaf)),
        "dtype": np.dtype(leaf.dtype).name,
        "sha256": _leaf_hash(leaf) if hashes else None,
      }
      for path, leaf in flat
    ],
  }


def _leaf_name(index: int) -> str:
  return f"leaf_{index:05d}"


def _stored(tree: Any) -> dict[str, Any]:
  """The leaves orbax writes: every leaf with at least one element, under its own name."""
  return {_leaf_name(i): leaf for i, leaf in enumerate(jax.tree.leaves(tree)) if np.size(leaf)}


def _check_manifest(saved: Any) -> None:
  """Raises (TypeError/ValueError) unless ``saved`` has the manifest's schema."""
  if not isinstance(saved, dict):
    raise TypeError(f"not a manifest: {type(saved).__name__}")
  if saved.get("format") not in _READABLE_FORMATS:
    raise ValueError(
      f"manifest format {saved.get('format')!r}, expected one of {_READABLE_FORMATS}"
    )
  if not isinstance(saved.get("treedef"), str) or not isinstance(saved.get("leaves"), list):
    raise TypeError("manifest needs 'treedef' (a string) and 'leaves' (a list)")
  for i, record in enumerate(saved["leaves"]):
    if (
      not isinstance(record, dict)
      or not isinstance(record.get("path"), str)
      or not isinstance(record.get("dtype"), str)
      or not isinstance(record.get("shape"), list)
      or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in record["shape"])
      or not (record.get("sha256") is None or isinstance(record.get("sha256"), str))
    ):
      raise TypeError(f"manifest leaves[{i}] is not a {{path, shape, dtype, sha256}} record")


def _checkpointer() -> Any:
  try:
    import orbax.checkpoint as ocp  # optional dependency, imported on use
  except ModuleNotFoundError as error:
    if error.name not in ("orbax", "orbax.checkpoint"):
      raise  # orbax is there but broken: its own error says more
    raise ImportError(
      "save_checkpoint and restore_checkpoint need orbax-checkpoint, which is not installed: "
      'pip install "adadelta-optax[checkpoint]" (or pip install orbax-checkpoint).',
      name="orbax.checkpoint",
    ) from error

  return ocp, ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_checkpoint(directory: str | os.PathLike[str], tree: Any) -> None:
  """Saves ``tree`` (e.g. ``{"params": params, "opt_state": state}``) to a new ``directory``.

  Needs ``orbax-checkpoint`` (``pip install "adadelta-optax[checkpoint]"``; an ``ImportError``
  says so when it is missing). The directory must not exist; it appears only once the checkpoint
  is complete (orbax writes to a temporary directory and renames it), so a process killed while
  saving leaves no half-written checkpoint behind. In a multi-process run every process calls it.

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> import adadelta_optax
    >>> tx = adadelta_optax.adadelta()
    >>> params = {"w": jnp.ones(3)}
    >>> tree = {"params": params, "opt_state": tx.init(params)}
    >>> path = tempfile.mkdtemp() + "/step_0"
    >>> adadelta_optax.checkpoint.save_checkpoint(path, tree)
    >>> restored = adadelta_optax.checkpoint.restore_checkpoint(path, tree)
    >>> type(restored["opt_state"]).__name__
    'AdadeltaState'
  """
  ocp, checkpointer = _checkpointer()
  manifest = _describe(tree, hashes=True, what="save_checkpoint: tree")
  stored = _stored(tree)
  items = {"manifest": ocp.args.JsonSave(manifest)}
  if stored:
    items["state"] = ocp.args.StandardSave(stored)
  checkpointer.save(os.path.abspath(directory), args=ocp.args.Composite(**items))


def _first_mismatch(saved: dict[str, Any], expected: dict[str, Any]) -> str | None:
  if saved["treedef"] != expected["treedef"]:
    return (
      f"tree structure differs:\n  saved:    {saved['treedef']}\n  expected: {expected['treedef']}"
    )
  for have, want in zip(saved["leaves"], expected["leaves"], strict=True):
    for key in ("shape", "dtype"):
      if have[key] != want[key]:
        return f"leaf {want['path'] or '<root>'}: saved {key} {have[key]}, expected {want[key]}"
  return None


def restore_checkpoint(directory: str | os.PathLike[str], like: Any) -> Any:
  """The tree saved by :func:`save_checkpoint` in ``directory``, with the types of ``like``.

  Args:
    directory: a checkpoint directory written by :func:`save_checkpoint`.
    like: a tree with the expected structure, shapes and dtypes (arrays or
      ``jax.ShapeDtypeStruct`` s); NamedTuple states come back as their types, and arrays with
      the shardings of ``like`` 's leaves where they have one.

  Returns:
    The restored tree. Nothing of ``like`` is modified.

  Raises:
    CheckpointError: (a ``ValueError``) when the checkpoint is missing, unreadable or corrupted
      (an array does not match its recorded SHA-256), or does not match ``like`` (structure,
      NamedTuple types, shapes or dtypes); the message names the first difference.
    ImportError: when ``orbax-checkpoint`` is not installed (the ``checkpoint`` extra).

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> import adadelta_optax
    >>> from adadelta_optax.checkpoint import CheckpointError, restore_checkpoint, save_checkpoint
    >>> tx = adadelta_optax.adadelta()
    >>> params = {"w": jnp.ones(3)}
    >>> path = tempfile.mkdtemp() + "/step_0"
    >>> save_checkpoint(path, {"params": params, "opt_state": tx.init(params)})
    >>> restore_checkpoint(path, {"params": params, "opt_state": tx.init(params)})["params"]["w"]
    Array([1., 1., 1.], dtype=float32)
    >>> wrong = {"params": {"w": jnp.ones(4)}, "opt_state": tx.init({"w": jnp.ones(4)})}
    >>> try:
    ...   restore_checkpoint(path, wrong)
    ... except CheckpointError as error:
    ...   print(type(error).__name__)
    CheckpointError
  """
  ocp, checkpointer = _checkpointer()
  path = os.path.abspath(directory)
  if not os.path.isdir(path):
    raise CheckpointError(f"no checkpoint at {path}.")
  try:
    saved = checkpointer.restore(path, args=ocp.args.Composite(manifest=ocp.args.JsonRestore()))
    saved = saved["manifest"]
    _check_manifest(saved)
  except Exception as error:  # noqa: BLE001 - any failure here means an unreadable checkpoint
    raise CheckpointError(
      f"checkpoint {path} is corrupted or was not written by save_checkpoint: cannot read its "
      f"manifest ({type(error).__name__}: {error})."
    ) from error
  expected = _describe(like, hashes=False, what="restore_checkpoint: like")
  if len(saved["leaves"]) != len(expected["leaves"]):
    mismatch: str | None = (
      f"{len(saved['leaves'])} saved leaves, expected {len(expected['leaves'])}"
    )
  else:
    mismatch = _first_mismatch(saved, expected)
  if mismatch is not None:
    raise CheckpointError(f"checkpoint {path} does not match the given tree: {mismatch}.")

  def abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    sharding = getattr(leaf, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype, sharding=sharding)

  like_leaves = jax.tree.leaves(like)
  # Format 1 stored the tree under its own keys; format 2 the non-empty leaves by index.
  target = jax.tree.map(abstract, like) if saved["format"] == 1 else _stored(like)
  target = jax.tree.map(abstract, target)
  try:
    restored = (
      checkpointer.restore(path, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))[
        "state"
      ]
      if jax.tree.leaves(target)
      else {}
    )
  except Exception as error:  # noqa: BLE001
    raise CheckpointError(
      f"checkpoint {path} is corrupted: its arrays cannot be read ({type(error).__name__}: "
      f"{error})."
    ) from error
  if saved["format"] == 1:
    leaves = jax.tree.leaves(restored)
  else:
    empty = jax.tree.map(abstract, like_leaves)
    leaves = [
      restored[_leaf_name(i)]
      if np.size(leaf)
      else jax.numpy.zeros(empty[i].shape, empty[i].dtype, device=empty[i].sharding)
      for i, leaf in enumerate(like_leaves)
    ]
  restored = jax.tree.unflatten(jax.tree.structure(like), leaves)
  for leaf, record in zip(jax.tree.leaves(restored), saved["leaves"], strict=True):
    digest = _leaf_hash(leaf)
    if record["sha256"] is not None and digest is not None and digest != record["sha256"]:
      raise CheckpointError(
        f"checkpoint {path} is corrupted: leaf {record['path'] or '<root>'} does not match its "
        "recorded SHA-256."
      )
  return restored
