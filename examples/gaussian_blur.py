"""The lecture's two 7x7 Gaussian kernels, applied to an image with gd.conv2d.

The slides show a kernel with centre 0.1592 (σ = 1) and a wide, nearly flat one with centre
0.0212 and corner 0.0194. Normalized to sum 1, a 7x7 Gaussian has corner/centre = e^(-18/2σ²),
so the second kernel's σ follows from 0.0194 / 0.0212; this script solves for it (σ ≈ 10) and
checks both kernels against the slide's numbers. (For σ = 1, 0.1592 is also 1/2π, the peak of
the continuous 2-D Gaussian; the normalized 7x7 kernel has 0.1592 too.)

The image is scikit-image's `data.camera()` (shipped with the package, no download); without
scikit-image, scikit-learn's sample image (if it loads) or a synthetic test pattern is used, and
the script says which. The original and both blurs are saved side by side as a PNG (matplotlib
if installed, else a small zlib-based PNG writer).

Run from the repository root:  python examples/gaussian_blur.py [--out blur.png]
(default build/gaussian_blur.png)
Smoke mode:  GRAPHDL_SMOKE=1 python examples/gaussian_blur.py  (a 128x128 crop)
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import data
import numpy as np
import smoke

import graphdl as gd

SIZE = 7
SLIDE_NARROW_CENTRE = 0.1592
SLIDE_WIDE = {"centre": 0.0212, "corner": 0.0194}


def gaussian(sigma, size=SIZE):
    """A size x size Gaussian kernel, normalized to sum 1."""
    r = np.arange(size) - size // 2
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma**2))
    return k / k.sum()


def solve_sigma(centre, corner, size=SIZE):
    """The σ whose normalized kernel has the slide's corner/centre ratio (bisection)."""
    target = corner / centre
    lo, hi = 0.1, 1000.0
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        k = gaussian(mid, size)
        if k[0, 0] / k[size // 2, size // 2] < target:
            lo = mid  # too peaked: widen
        else:
            hi = mid
    return (lo * hi) ** 0.5


def load_image(smoke):
    """(grayscale float64 image in [0, 1], where it came from)."""
    try:
        from skimage import data as skdata

        image, source = skdata.camera() / 255.0, "scikit-image data.camera() (512x512)"
    except ImportError:
        try:
            from sklearn.datasets import load_sample_image

            rgb = load_sample_image("china.jpg") / 255.0
            image = rgb @ np.array([0.299, 0.587, 0.114])
            source = "scikit-learn load_sample_image('china.jpg') (scikit-image not installed)"
        except Exception:  # noqa: BLE001 - any failure means: use the synthetic image
            yy, xx = np.mgrid[0:256, 0:256]
            image = ((xx // 32 + yy // 32) % 2) * 0.8 + 0.1  # a checkerboard
            image[96:160, 96:160] = 0.5 + 0.5 * np.sin(xx[96:160, 96:160] / 3.0)
            source = "SYNTHETIC checkerboard (neither scikit-image nor scikit-learn's image loads)"
    if smoke:
        h, w = image.shape
        image = image[h // 2 - 64:h // 2 + 64, w // 2 - 64:w // 2 + 64]
        source += ", 128x128 centre crop [smoke]"
    return image.astype(np.float64), source


def save_png(path, panels, titles):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        write_png(path, np.concatenate([np.pad(p, ((0, 0), (0, 8)), constant_values=1.0)
                                        for p in panels], axis=1)[:, :-8])
        return "a minimal PNG writer (matplotlib not installed)"
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    for ax, panel, title in zip(axes, panels, titles):
        ax.imshow(panel, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    smoke.stamp(fig)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "matplotlib"


def write_png(path, gray):
    """An 8-bit grayscale PNG from values in [0, 1], with zlib and struct only."""
    pixels = (np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/gaussian_blur.png", help="the PNG to write")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    smoke.note("the same kernels (they do not depend on the mode), and the blurs of the whole "
               "image, not of its 128x128 centre (python examples/gaussian_blur.py)")

    narrow = gaussian(1.0)
    sigma = solve_sigma(SLIDE_WIDE["centre"], SLIDE_WIDE["corner"])
    wide = gaussian(sigma)
    print(f"sigma = 1: centre {narrow[3, 3]:.4f} (slide: {SLIDE_NARROW_CENTRE}), "
          f"corner {narrow[0, 0]:.6f}")
    print(f"wide kernel: corner/centre = {SLIDE_WIDE['corner']}/{SLIDE_WIDE['centre']} "
          f"gives sigma = {sigma:.2f}; its centre {wide[3, 3]:.4f}, corner {wide[0, 0]:.4f} "
          f"(slide: {SLIDE_WIDE['centre']}, {SLIDE_WIDE['corner']})")
    wide10 = gaussian(10.0)
    print(f"sigma = 10 exactly: centre {wide10[3, 3]:.4f}, corner {wide10[0, 0]:.4f}: "
          "the slide's kernel is sigma = 10")
    assert round(narrow[3, 3], 4) == SLIDE_NARROW_CENTRE
    assert round(wide10[3, 3], 4) == SLIDE_WIDE["centre"]
    assert round(wide10[0, 0], 4) == SLIDE_WIDE["corner"]

    image, source = load_image(data.is_smoke())
    print(f"image: {source}")
    h, w = image.shape
    # One convolution with two output channels, one per kernel; "same" padding keeps the size.
    x = gd.input("image", (1, 1, h, w), "float64")
    k = gd.input("kernels", (2, 1, SIZE, SIZE), "float64")
    blurred = gd.conv2d(x, k, padding="same")
    fn = gd.compile(blurred)
    out = fn(image=image[None, None], kernels=np.stack([narrow, wide10])[:, None])
    # zero padding darkens the border: divide by the blur of an all-ones image
    norm = fn(image=np.ones((1, 1, h, w)), kernels=np.stack([narrow, wide10])[:, None])
    out = out / norm
    interior = image[3:-3, 3:-3]
    for name, b in zip(("sigma 1", "sigma 10"), out[0]):
        detail = np.abs(np.diff(b[3:-3, 3:-3], axis=1)).mean()
        print(f"{name}: mean |horizontal difference| {detail:.4f} "
              f"(original {np.abs(np.diff(interior, axis=1)).mean():.4f}){smoke.tag()}")
    how = save_png(args.out, [image, out[0, 0], out[0, 1]],
                   ["original", "7x7 Gaussian, sigma = 1", "7x7 Gaussian, sigma = 10"])
    print(f"wrote {args.out} (original | sigma 1 | sigma 10) with {how}{smoke.tag()}")


if __name__ == "__main__":
    main()
