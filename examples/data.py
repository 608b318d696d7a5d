"""Dataset helpers shared by the examples (NumPy only; tqdm/scikit-learn optional).

``load_fashion_mnist`` reads Fashion-MNIST from the Debian package
``dataset-fashion-mnist`` (gzipped IDX files under
/usr/share/datasets/fashion-mnist). If those files are absent it falls back to
scikit-learn's 8x8 ``load_digits`` so the examples still run anywhere.

``GRAPHDL_FASHION_MNIST_DIR`` names another folder holding the four files; the value ``none``
forces the digits fallback (how the tests are checked on a machine without the package:
``GRAPHDL_FASHION_MNIST_DIR=none python -m pytest tests``).
"""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(
    os.environ.get("GRAPHDL_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
)
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
SMOKE_TRAIN = 512
SMOKE_TEST = 256

# Name of the dataset returned by the most recent load_fashion_mnist() call.
dataset_name: str | None = None


def is_smoke() -> bool:
    """True when the examples should run in quick smoke mode (GRAPHDL_SMOKE=1)."""
    return os.environ.get("GRAPHDL_SMOKE") == "1"


def _read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes into a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = data[0] << 8 | data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _load_idx_dataset(root: Path):
    x_train = _read_idx(root / _FILES["x_train"])
    y_train = _read_idx(root / _FILES["y_train"])
    x_test = _read_idx(root / _FILES["x_test"])
    y_test = _read_idx(root / _FILES["y_test"])

    def prep(x):
        return x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0)

    return prep(x_train), y_train.astype(np.int64), prep(x_test), y_test.astype(np.int64)


def _load_digits_dataset(seed: int = 0):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = (8 * len(x) + 5) // 10  # 80/20 split
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def load_fashion_mnist(smoke: bool = False, verbose: bool = True):
    """Return ``(x_train, y_train, x_test, y_test)``.

    Images are float32 in [0, 1] with shape (N, 784) for Fashion-MNIST (or
    (N, 64) for the digits fallback); labels are int64 in 0..9. With
    ``smoke=True`` only the first 512 train / 256 test samples are returned.
    The dataset used is stored in the module attribute ``dataset_name`` and
    announced on one line (unless ``verbose=False``).
    """
    global dataset_name
    if str(FASHION_MNIST_DIR) != "none" and all(
        (FASHION_MNIST_DIR / f).is_file() for f in _FILES.values()
    ):
        arrays = _load_idx_dataset(FASHION_MNIST_DIR)
        dataset_name = "fashion-mnist"
        note = f"Using Fashion-MNIST from {FASHION_MNIST_DIR}"
    else:
        arrays = _load_digits_dataset()
        dataset_name = "digits"
        why = (
            "GRAPHDL_FASHION_MNIST_DIR=none"
            if str(FASHION_MNIST_DIR) == "none"
            else "Fashion-MNIST not found (apt-get install dataset-fashion-mnist)"
        )
        note = f"{why}; using scikit-learn digits (8x8, 64 features) instead"
    x_train, y_train, x_test, y_test = arrays
    if smoke:
        x_train, y_train = x_train[:SMOKE_TRAIN], y_train[:SMOKE_TRAIN]
        x_test, y_test = x_test[:SMOKE_TEST], y_test[:SMOKE_TEST]
    if verbose:
        mode = " [smoke]" if smoke else ""
        print(f"{note}: {len(x_train)} train / {len(x_test)} test{mode}")
    return x_train, y_train, x_test, y_test


class _TextProgress:
    """Minimal tqdm stand-in: iterates and prints a progress line to stderr."""

    def __init__(self, iterable, desc=None, total=None, **_ignored):
        self.iterable = iterable
        self.desc = desc or ""
        if total is None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.total = total

    def __iter__(self):
        step = max(1, (self.total or 0) // 20)
        prefix = f"{self.desc}: " if self.desc else ""
        for n, item in enumerate(self.iterable, start=1):
            yield item
            if n % step == 0 or n == self.total:
                of = f"/{self.total}" if self.total else ""
                print(f"\r{prefix}{n}{of}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr, flush=True)

    def __len__(self):
        return self.total


def progress(iterable, **kw):
    """Wrap ``iterable`` in a tqdm progress bar, or a plain-text one without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextProgress(iterable, **kw)
    return tqdm(iterable, **kw)


if __name__ == "__main__":
    xtr, ytr, xte, yte = load_fashion_mnist(smoke=is_smoke())
    print(
        dataset_name,
        xtr.shape,
        xtr.dtype,
        ytr.shape,
        ytr.dtype,
        xte.shape,
        yte.shape,
        float(xtr.min()),
        float(xtr.max()),
        np.bincount(ytr).tolist(),
    )
