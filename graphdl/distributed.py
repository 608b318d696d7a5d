"""Data-parallel training on torch.distributed: the same compiled step on every worker, each with
its rows of the global batch, gradients averaged by the `gd.allreduce` op inside the step.

    import graphdl.distributed as gdd
    gdd.init()                                  # torchrun / Ray Train's environment; else 1 worker
    opt = gd.optim.sgd(loss, params, lr=0.1, allreduce="mean", rows=x)
    step = gd.compile(loss, updates=opt.updates)
    gdd.broadcast_parameters(arrays)            # every replica starts from rank 0's values
    for k in range(steps):
        step(x=gdd.shard(batch_x(k)), y=gdd.shard(batch_y(k)), **arrays)

Without a process group (one process, or `init()` never called) the world has one worker and
every collective is the identity: nothing here imports torch until `init()` joins a group.

No hangs: every collective waits at most `timeout` seconds (`init(timeout=)`); when one fails,
the error says which collective it was, this worker's rank, and the ranks that never reached it
(each failing rank leaves a mark in the group's store; a dead or stuck rank leaves none).
`allreduce_start` starts an allreduce and returns at once, for callers that compute on while it
travels; its `wait()` is bounded the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_TIMEOUT = 60.0  # seconds a collective may wait for the other workers
_state = {"timeout": DEFAULT_TIMEOUT, "calls": 0}


class CollectiveError(RuntimeError):
    """A collective did not complete: a worker died, hung or disagreed on the call."""


def _dist():
    """torch.distributed if a process group is up, else None (torch is never imported here)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def run(train_fn, workers=2, max_failures=0, config=None, storage=None, keep=2,
        resize_interval=60.0):
    """Run `train_fn(config)` on `workers` Ray Train workers joined in a gloo group (Ray Train's
    TorchTrainer makes it; `init()` inside train_fn finds it up); when one fails, Ray restarts
    them all, `max_failures` times at most: train_fn then `resume`s from its last checkpoint.
    `workers=(least, most)`: elastic, as many as the cluster has room for, restarted with
    another count as that changes (Ray looks for room every `resize_interval` seconds); a
    checkpoint resumes on any count (the step is the global batch's however it is split: the
    same run, to rounding).
    Inside, `checkpoint` also reports each checkpoint to Ray, which keeps the `keep` newest
    in its storage (`storage`: Ray's storage path; shared storage across machines). Returns
    Ray's `Result`: `load_checkpoint(result.checkpoint)` reads the last one."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        functools.partial(_on_ray, train_fn), train_loop_config=config or {},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, elastic_resize_monitor_interval_s=resize_interval),
        run_config=ray.train.RunConfig(
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep),
            failure_config=ray.train.FailureConfig(max_failures=max_failures)))
    return trainer.fit()


def _on_ray(train_fn, config):
    """A Ray Train worker of `run`: its checkpoints go to Ray's records too."""
    _state["ray"] = True
    return train_fn(config)


def launch(workers, max_restarts=0):
    """Run this script on `workers` local processes under torchrun (`torch.distributed.run
    --standalone`, which picks a free port), with this command line's arguments, and exit with
    its status; a no-op with one worker or inside a launched worker. Scripts call it first, so
    that `--workers N` needs no torchrun on the command line."""
    if workers <= 1 or "WORLD_SIZE" in os.environ:
        return
    import __main__

    spec = getattr(__main__, "__spec__", None)
    target = ["-m", spec.name] if spec is not None else [sys.argv[0]]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={workers}", f"--max-restarts={max_restarts}", *target,
               *sys.argv[1:]]
    sys.exit(subprocess.run(command, check=False).returncode)


def init(backend="gloo", init_method=None, rank=None, world_size=None, timeout=DEFAULT_TIMEOUT):
    """Join the torch.distributed process group that the launcher describes: torchrun and Ray
    Train set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (`init_method` "env://"); tests give
    a `file://` rendezvous and the rank and world size. A no-op in a single process (no
    WORLD_SIZE, or 1) and when a group is already up (Ray Train makes one). `timeout`: the
    seconds any collective may wait before it raises `CollectiveError`."""
    _state["timeout"] = float(timeout)
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else int(world_size)
    if world_size <= 1 or _dist() is not None:
        return
    import torch.distributed as dist

    rank = int(os.environ["RANK"]) if rank is None else int(rank)
    timeout = datetime.timedelta(seconds=_state["timeout"])
    atexit.register(_leave)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None or init_method not in (None, "env://"):
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank,
                                world_size=world_size, timeout=timeout)
        return
    # torchrun keeps its store across restarts: the workers of a restart would read the
    # addresses of the dead ones. Their keys go under the restart's own prefix.
    store, rank, world_size = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
    dist.init_process_group(backend, store=dist.PrefixStore(f"graphdl/restart-{restart}/", store),
                            rank=rank, world_size=world_size, timeout=timeout)


def _leave():
    """Leave the group at exit: a gloo group torn down with the interpreter can abort the
    process (SIGABRT) once its peers have gone, failing a finished run under torchrun."""
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()


def set_timeout(seconds):
    """The seconds each collective from now on may wait for the other workers."""
    _state["timeout"] = float(seconds)


def rank():
    """This worker's rank, 0 without a process group."""
    dist = _dist()
    return 0 if dist is None else dist.get_rank()


def world_size():
    """The number of workers, 1 without a process group."""
    dist = _dist()
    return 1 if dist is None else dist.get_world_size()


def shard(array, axis=0):
    """This rank's rows of a global batch along `axis` (a view): the rows split as evenly as
    possible (the counts differ by one at most). Weight the mean by rows
    (`gd.optim.sgd(..., allreduce="mean", rows=x)`), so that an uneven split gives the same
    step as one worker with the whole batch."""
    array = np.asarray(array)
    axis = np.lib.array_utils.normalize_axis_index(axis, array.ndim)
    rows, workers, me = array.shape[axis], world_size(), rank()
    if rows < workers:
        raise ValueError(f"shard: {rows} rows along axis {axis} cannot give each of "
                         f"{workers} workers one")
    start, stop = me * rows // workers, (me + 1) * rows // workers
    return array[(slice(None),) * axis + (slice(start, stop),)]


def broadcast_parameters(arrays):
    """Overwrite `arrays` (a dict or list of C-contiguous NumPy arrays: parameters and optimizer
    state) in place with rank 0's, so that every replica starts equal."""
    values = list(arrays.values()) if isinstance(arrays, dict) else list(arrays)
    if _dist() is None:
        return
    import torch

    for value in values:
        _collective("broadcast", lambda d, v=value: d.broadcast(torch.from_numpy(v), src=0,
                                                                 async_op=True))


def checkpoint(arrays, step, directory=None, keep=2):
    """Save `arrays` ({name: array}: parameters and optimizer state) as the state after `step`
    steps, in `directory`: rank 0 writes `step-<step>.npz` under a temporary name and renames it
    (a crash leaves the last complete checkpoint whole), then removes all but the `keep`
    newest. Under `run` (Ray Train) it is also reported to Ray (`ray.train.report`, a barrier:
    every rank calls it), which copies it to its storage; `directory` may then be None. Batch k
    depending on k alone, `resume` then replays the run exactly."""
    on_ray = _state.get("ray", False)
    if directory is None and not on_ray:
        raise ValueError("checkpoint: give a directory (only workers started by gdd.run have "
                         "Ray's records to keep checkpoints in)")
    if directory is not None and rank() == 0:
        _write(arrays, step, Path(directory), keep)
    if on_ray:
        import ray.train

        with tempfile.TemporaryDirectory() as place:
            record = None
            if rank() == 0:
                _write(arrays, step, Path(place), keep=1)
                record = ray.train.Checkpoint.from_directory(place)
            ray.train.report({"step": step}, checkpoint=record)  # copied before it returns


def _write(arrays, step, directory, keep):
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".step-{step}.npz.partial"
    with open(temporary, "wb") as file:
        np.savez(file, **arrays)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, directory / f"step-{step}.npz")
    for _, old in _checkpoints(directory)[:-keep]:
        old.unlink()


def resume(arrays, directory=None):
    """Load the newest complete checkpoint into `arrays` in place (rank 0 reads it, every rank
    receives it) and return its step; without one, make `arrays` rank 0's and return 0. It is
    the newest of `directory`'s and, under `run`, of Ray's records. Call it on every rank
    before the first step, in place of `broadcast_parameters`."""
    step = np.zeros(1, np.int64)
    if rank() == 0:
        with contextlib.ExitStack() as opened:
            places = [directory] if directory is not None else []
            record = _ray_record()
            if record is not None:
                places.append(opened.enter_context(record.as_directory()))
            newest = _newest(places)
        if newest is not None:
            step[0], saved = newest
            if set(saved) != set(arrays):
                raise ValueError(f"resume: the checkpoint of step {step[0]} holds "
                                 f"{sorted(saved)}, not {sorted(arrays)}")
            for name, value in arrays.items():
                value[...] = saved[name]
    broadcast_parameters([step, *arrays.values()])
    return int(step[0])


def _ray_record():
    """Ray's last checkpoint of this run (a restarted worker's), or None."""
    if not _state.get("ray", False):
        return None
    import ray.train

    return ray.train.get_checkpoint()


def load_checkpoint(source):
    """(step, {name: array}) of the newest checkpoint in `source`: a directory `checkpoint`
    wrote, or a Ray `Checkpoint` (`run(...).checkpoint`)."""
    with contextlib.ExitStack() as opened:
        if hasattr(source, "as_directory"):
            source = opened.enter_context(source.as_directory())
        newest = _newest([source])
    if newest is None:
        raise FileNotFoundError(f"load_checkpoint: no step-<step>.npz in {source}")
    return newest


def _newest(places):
    """(step, {name: array}) of the newest complete checkpoint in the directories `places`,
    read into memory; None without one."""
    found = sorted(c for place in places for c in _checkpoints(Path(place)))
    if not found:
        return None
    step, path = found[-1]
    with np.load(path) as saved:
        return step, {name: saved[name] for name in saved.files}


def _checkpoints(directory):
    """[(step, path)] of the complete checkpoints in `directory`, oldest first."""
    named = ((_step_of(p), p) for p in directory.glob("step-*"))
    return sorted((step, p) for step, p in named if step is not None)


def _step_of(path):
    match = re.fullmatch(r"step-(\d+)\.npz", path.name)
    return int(match.group(1)) if match else None


def allreduce_array(x, op, weight=None, xp=np, out=None):
    """The runtime of `gd.allreduce`: Σ over workers of x ("sum"), or its mean ("mean"),
    weighted by each worker's `weight` (rows) when given: Σ w_r x_r / Σ w_r. One collective, in
    place on a buffer of x's dtype made by `xp`, x's array module: NumPy (torch reads it
    through `torch.from_numpy`) or CuPy (through DLPack: the GPU buffer itself, reduced on the
    device by a group with NCCL, `init(backend="cpu:gloo,cuda:nccl")`); no copy between them.
    `out`: a C-contiguous array of x's shape and dtype the result goes to, returned (x itself:
    x is reduced in place, without the buffer: large arrays reduced often). With one worker x
    comes back (or is copied to `out`): the identity, bit for bit."""
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype
                            or not out.flags.c_contiguous):
        raise ValueError(f"allreduce_array: out must be a C-contiguous {x.dtype} array of "
                         f"shape {x.shape}, got {out.dtype} {out.shape}")
    if _dist() is None:
        if out is not None and out is not x:
            out[...] = x
        return x if out is None else out
    import torch

    weighted = weight is not None and op == "mean"
    in_place = out is not None and not weighted  # the weight needs one more element
    flat = out.reshape(-1) if in_place else xp.empty(x.size + weighted, x.dtype)
    if weighted:  # this worker's weight travels in the same buffer: one call
        xp.multiply(x.reshape(-1), x.dtype.type(weight), out=flat[:-1])
        flat[-1] = weight
    elif out is not x:
        flat[:] = x.reshape(-1)
    if xp is np:
        _collective("allreduce", lambda d: d.all_reduce(torch.from_numpy(flat), async_op=True))
    else:
        _device_collective(torch, flat)
    values = flat[:-1] if weighted else flat
    if op == "mean":
        values /= flat[-1] if weighted else world_size()
    if out is None:
        return values.reshape(x.shape)
    if not in_place:
        out[...] = values.reshape(x.shape)
    return out


def _device_collective(torch, flat):
    """allreduce of a GPU array (CuPy) in place, ordered on CuPy's current stream: torch runs
    the collective after the kernels queued there, and the kernels queued after it wait for
    it (torch's own current stream may be another)."""
    import cupy

    pointer = cupy.cuda.get_current_stream().ptr  # 0: the legacy default stream, torch's too
    stream = torch.cuda.ExternalStream(pointer) if pointer else torch.cuda.default_stream()
    with torch.cuda.stream(stream):
        tensor = torch.from_dlpack(flat)
        _collective("allreduce", lambda d: d.all_reduce(tensor, async_op=True))


def _collective(what, start):
    """Run the collective `start(torch.distributed)` returns (its async work), waiting at most
    the timeout; a failure raises CollectiveError naming the ranks that never reached it."""
    _Pending(what, start).wait()


class _Pending:
    """A collective under way: `start(torch.distributed)` returned its async work."""

    def __init__(self, what, start, then=None):
        _state["calls"] += 1
        self.what, self.call, self.then = what, _state["calls"], then
        dist = _dist()
        self.work = None if dist is None else start(dist)

    def ready(self):
        """Whether it is done (or failed: `wait` then raises), without waiting."""
        return self.work is None or self.work.is_completed()

    def wait(self):
        """Wait for it, at most the timeout; a failure raises CollectiveError naming the ranks
        that never reached it. Returns `then()`."""
        if self.work is not None:
            work, self.work = self.work, None
            try:
                work.wait(datetime.timedelta(seconds=_state["timeout"]))
            except RuntimeError as error:
                dist = _dist()
                raise CollectiveError(
                    f"rank {dist.get_rank()}: {self.what} #{self.call} failed within "
                    f"{_state['timeout']:g} s; {_absent(dist, self.call)} "
                    f"({str(error).splitlines()[0][:200]})") from error
        return None if self.then is None else self.then()


def allreduce_start(x, op="sum"):
    """`allreduce_array(x, op, out=x)` started, not waited for: returns at once a handle whose
    `ready()` says, without waiting, whether the sum has arrived and whose `wait()` waits for
    it (at most the timeout, as every collective) and returns x, reduced in place. Leave x
    alone until then; the caller computes on meanwhile (word2vec's rounds train on while the
    rows travel). x: a C-contiguous NumPy array. With one worker x comes back as it is."""
    if op not in ("sum", "mean"):
        raise ValueError(f"allreduce_start: op must be 'sum' or 'mean', got {op!r}")
    if not (isinstance(x, np.ndarray) and x.flags.c_contiguous):
        raise ValueError("allreduce_start: x must be a C-contiguous NumPy array")

    def start(dist):
        import torch  # loaded already: a group is up

        return dist.all_reduce(torch.from_numpy(x.reshape(-1)), async_op=True)

    def then():
        if op == "mean":
            np.divide(x, world_size(), out=x)
        return x

    return _Pending("allreduce", start, then)


def _absent(dist, call):
    """Which ranks did not reach collective `call`: each failing rank marks the group's store,
    and the others have a moment to do so; those without a mark are dead or stuck."""
    me, world = dist.get_rank(), dist.get_world_size()
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(f"graphdl/failed/{call}/{me}", "1")
        deadline = time.monotonic() + min(2.0, _state["timeout"])
        keys = {r: f"graphdl/failed/{call}/{r}" for r in range(world) if r != me}
        missing = list(keys)
        while time.monotonic() < deadline:
            missing = [r for r, key in keys.items() if not store.check([key])]
            if not missing:
                break
            time.sleep(0.05)
    except (RuntimeError, AttributeError):  # the store is gone too: say nothing we do not know
        return "the other ranks could not be asked which of them failed"
    if not missing:
        return "every rank reached it: they disagree on the call, or the network failed"
    shown = ", ".join(str(r) for r in missing)
    return f"rank{'s' if len(missing) > 1 else ''} {shown} did not reach it (dead or stuck)"
