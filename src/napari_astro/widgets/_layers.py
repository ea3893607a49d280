"""napari layers <-> :class:`~napari_astro.core.image.AstroImage`: the one place.

Conventions (the reader, the writers, the sample data and every widget use them):

* **Colour** images are shown as **one RGB layer** (``rgb=True``, data ``(H, W, 3)``,
  a view of the channel-first array, no copy). An astrophotographer looks at a colour
  stack as one picture (as PixInsight and Siril show it) and saves it as one file;
  three additive R/G/B layers would make every writer and step juggle three layers.
  The display is stretched with contrast limits and gamma only: the data stay linear.
* **Mono** and raw **CFA mosaics** are single 2-D grey layers; a mosaic keeps its
  pattern in the metadata (``bayer``) so calibration/debayering can use it.
* **Stacks** of frames (e.g. registered frames) are one layer ``(N, H, W)`` or
  ``(N, H, W, 3)`` with ``kind = "stack"``.
* Provenance: ``layer.metadata["astro"]`` is a dict with ``header``
  (``fits.Header``), ``history`` (list of str), ``bayer``, ``path``, ``mask``
  (optional ``(H, W)`` bool) and ``kind`` (``"image"`` or ``"stack"``; stacks also
  ``headers``/``histories``/``paths`` lists). Writers and steps read it back, so
  HISTORY survives a round trip through napari.

Nothing here imports Qt; napari is imported only for type hints.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..core.image import AstroImage

__all__ = ["ASTRO_KEY", "image_to_layer_data", "images_to_stack_layer_data", "layer_to_image",
           "layer_data_to_image", "layer_to_images", "display_settings", "is_astro_layer",
           "mask_layer_data", "included_frame_stats"]

#: Key of our provenance dict in ``layer.metadata``.
ASTRO_KEY = "astro"

LayerDataTuple = tuple  # (data, kwargs, layer_type)


# --------------------------------------------------------------------------- display
def display_settings(data: np.ndarray, *, rgb: bool = False, target_background: float = 0.2,
                     white_percentile: float = 99.95) -> dict[str, Any]:
    """Contrast limits and gamma that show linear astro data like an auto-stretch.

    Black point at the auto-STF shadows clip (median - 2.8 sigma, see
    :func:`napari_astro.core.stretch.stf_parameters`), white point at the
    ``white_percentile`` (stars may saturate on screen, never the nebula), and a gamma that
    lifts the sky median to about ``target_background`` -- the closest napari's
    contrast-limits + gamma pipeline gets to PixInsight's STF. Display only: the layer
    data are not changed.

    Parameters
    ----------
    data : ndarray
        ``(H, W)`` or ``(H, W, 3)`` (``rgb``), any real dtype.
    rgb : bool
        Whether the last axis is colour (the luminance is measured).
    target_background : float, default 0.2
        Displayed brightness of the sky median, in [0, 1].
    white_percentile : float, default 99.95
        Percentile of the (luminance) values shown as white.

    Returns
    -------
    dict
        ``contrast_limits`` and ``gamma`` keyword arguments for ``add_image``.
    """
    from ..core.stretch import stf_parameters

    arr = np.asarray(data)
    # A ~250k-pixel sample is plenty for percentiles and keeps this under 5 ms.
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / 250_000)))
    sample = arr[::step, ::step]
    lum = sample.mean(axis=-1) if rgb else sample
    lum2d = np.asarray(lum, dtype=np.float32)
    lum = lum2d[np.isfinite(lum2d)]
    if lum.size == 0:
        return {"contrast_limits": (0.0, 1.0), "gamma": 1.0}
    lo, _, _ = stf_parameters(lum2d)
    hi = float(np.percentile(lum, white_percentile))
    lo_rob = float(np.percentile(lum, 0.1))
    lo = max(float(lo), lo_rob)
    if not hi > lo:
        lo, hi = float(lum.min()), float(lum.max())
        if not hi > lo:
            hi = lo + 1.0
        return {"contrast_limits": (lo, hi), "gamma": 1.0}
    med = float(np.median(lum))
    x = (med - lo) / (hi - lo)
    gamma = 1.0
    if 0.0 < x < 1.0:
        # (x ** gamma) == target_background at the sky median; napari's slider spans
        # 0.2..2, keep inside it so the user can still adjust.
        gamma = float(np.clip(np.log(target_background) / np.log(x), 0.2, 2.0))
    return {"contrast_limits": (lo, hi), "gamma": gamma}


def is_astro_layer(layer: Any) -> bool:
    """True for image layers that carry our provenance metadata."""
    return isinstance(getattr(layer, "metadata", None), Mapping) and ASTRO_KEY in layer.metadata


# --------------------------------------------------------------------------- image -> layer
def _astro_meta(img: AstroImage, kind: str = "image") -> dict[str, Any]:
    return {"header": img.header, "history": list(img.history), "bayer": img.bayer,
            "path": img.path, "mask": img.mask, "kind": kind}


def image_to_layer_data(img: AstroImage, name: str | None = None, *, stretch: bool = True,
                        **kwargs: Any) -> LayerDataTuple:
    """A napari image ``LayerDataTuple`` for ``img`` (see the module conventions).

    Parameters
    ----------
    img : AstroImage
        Mono/CFA ``(H, W)`` or colour ``(3, H, W)``.
    name : str, optional
        Layer name (default: the file's stem, else ``"image"``).
    stretch : bool, default True
        Set contrast limits and gamma for a linear image (see :func:`display_settings`).
    **kwargs
        More ``add_image`` keyword arguments (override the defaults).
    """
    if name is None:
        from pathlib import Path

        name = Path(img.path).name if img.path else "image"
        if img.bayer:
            name = f"{name} [CFA {img.bayer}]"
    if img.is_color:
        data = np.moveaxis(img.data, 0, -1)  # (H, W, 3) view, no copy
        opts: dict[str, Any] = {"rgb": True}
    else:
        data = img.data
        opts = {"rgb": False, "colormap": "gray"}
    opts["name"] = name
    opts["metadata"] = {ASTRO_KEY: _astro_meta(img)}
    if stretch:
        opts.update(display_settings(data, rgb=img.is_color))
    opts.update(kwargs)
    return (data, opts, "image")


def images_to_stack_layer_data(images: Sequence[AstroImage], name: str, *,
                               stretch: bool = True, **kwargs: Any) -> LayerDataTuple:
    """One ``(N, H, W[, 3])`` stack layer from same-size images (one slider over frames).

    The provenance of each frame is kept in ``metadata["astro"]["headers"]``,
    ``["histories"]`` and ``["paths"]``; ``["include"]`` (list of bool, all True)
    lets a widget mark frames to leave out of a later integration.
    """
    if not images:
        raise ValueError("no images to stack")
    color = images[0].is_color
    data = np.stack([np.moveaxis(im.data, 0, -1) if color else im.data for im in images])
    meta = _astro_meta(images[0], kind="stack")
    meta.update(headers=[im.header for im in images], histories=[list(im.history) for im in images],
                paths=[im.path for im in images], masks=[im.mask for im in images],
                include=[True] * len(images))
    opts: dict[str, Any] = {"rgb": color, "name": name, "metadata": {ASTRO_KEY: meta}}
    if not color:
        opts["colormap"] = "gray"
    if stretch:
        opts.update(display_settings(data[0], rgb=color))
    opts.update(kwargs)
    return (data, opts, "image")


def mask_layer_data(mask2d: np.ndarray, name: str, *, colormap: str = "magma",
                    opacity: float = 0.6, **kwargs: Any) -> LayerDataTuple:
    """An overlay image layer for a map (rejection map, mask): additive, translucent.

    A channel-first colour map ``(3, H, W)`` is shown as its maximum over channels
    (where *any* channel was rejected): one overlay, not a three-slice stack.
    """
    data = np.asarray(mask2d)
    if data.dtype == bool:
        data = data.astype(np.float32)
    if data.ndim == 3 and data.shape[0] == 3:
        data = data.max(axis=0)
    hi = float(np.nanmax(data)) if data.size else 1.0
    opts = {"name": name, "colormap": colormap, "opacity": opacity, "blending": "additive",
            "contrast_limits": (0.0, hi if hi > 0 else 1.0)}
    opts.update(kwargs)
    return (data, opts, "image")


# --------------------------------------------------------------------------- layer -> image
def _as_float01(data: Any) -> np.ndarray:
    """float32 array from layer data; integer data scaled by their type's full range."""
    if isinstance(data, (list, tuple)):  # multiscale: the full-resolution level
        data = data[0]
    arr = np.asarray(data)
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        return (arr.astype(np.float32) - np.float32(max(info.min, 0))) / np.float32(info.max)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


def layer_data_to_image(data: Any, meta: Mapping[str, Any] | None = None) -> AstroImage:
    """An :class:`AstroImage` from a layer's data and attributes (the writer's view).

    Parameters
    ----------
    data : array-like
        Layer data: ``(H, W)``, ``(H, W, 3|4)`` with ``rgb``, or channel-first
        ``(3, H, W)``. Integer data are scaled to [0, 1] by their type's range; an
        alpha channel is dropped.
    meta : mapping, optional
        Layer attributes as napari passes them to writers (``rgb``, ``name``,
        ``metadata``), or ``layer.as_layer_data_tuple()[1]``.
    """
    meta = dict(meta or {})
    astro = dict((meta.get("metadata") or {}).get(ASTRO_KEY) or {})
    arr = _as_float01(data)
    rgb = bool(meta.get("rgb", False))
    if rgb or (arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3)):
        arr = np.moveaxis(arr[..., :3], -1, 0)  # view
    if arr.ndim == 3 and arr.shape[0] not in (1, 3):
        raise ValueError(f"layer {meta.get('name', '')!r}: a stack of {arr.shape[0]} frames is "
                         "not one image (use layer_to_images)")
    from astropy.io import fits

    header = astro.get("header")
    header = header.copy() if isinstance(header, fits.Header) else fits.Header()
    mask = astro.get("mask")
    if mask is not None and np.shape(mask) != arr.shape[-2:]:
        mask = None  # the data were cropped/resized in napari: the footprint is stale
    bayer = astro.get("bayer") if arr.ndim == 2 else None
    return AstroImage(data=arr, header=header, history=list(astro.get("history") or []),
                      mask=mask, bayer=bayer, path=astro.get("path"))


def layer_to_image(layer: Any) -> AstroImage:
    """The :class:`AstroImage` behind a napari image layer (a view where possible).

    A stack layer is not one image: use :func:`layer_to_images` (``ValueError`` here).
    """
    return layer_data_to_image(layer.data, {"rgb": getattr(layer, "rgb", False),
                                            "name": layer.name, "metadata": layer.metadata})


def layer_to_images(layer: Any) -> list[AstroImage]:
    """The frames of a layer: one image, or every frame of a stack layer.

    A stack is a layer with ``metadata["astro"]["kind"] == "stack"``, or any
    non-RGB 3-D layer whose first axis is not 3 (N grey frames), or a 4-D RGB layer.
    Frames marked ``include = False`` in the metadata are left out.
    """
    astro = dict(layer.metadata.get(ASTRO_KEY) or {}) if is_astro_layer(layer) else {}
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    ndim = np.ndim(data) - (1 if rgb else 0)
    is_stack = (astro.get("kind") == "stack" or ndim == 4
                or (ndim == 3 and (rgb or np.shape(data)[0] != 3)))
    if not is_stack:
        return [layer_to_image(layer)]
    n = np.shape(data)[0]
    include = list(astro.get("include") or [True] * n)
    out = []
    for i in range(n):
        if i < len(include) and not include[i]:
            continue
        frame_meta = {
            "header": _nth(astro.get("headers"), i, astro.get("header")),
            "history": _nth(astro.get("histories"), i, astro.get("history")),
            "path": _nth(astro.get("paths"), i, None),
            "mask": _nth(astro.get("masks"), i, None),
            "bayer": astro.get("bayer"),
        }
        out.append(layer_data_to_image(data[i], {"rgb": rgb, "name": f"{layer.name}[{i}]",
                                                 "metadata": {ASTRO_KEY: frame_meta}}))
    return out


def included_frame_stats(layer: Any) -> tuple[list | None, int]:
    """Per-frame stats and the reference's position among the *included* frames.

    For a stack layer made by the Registration widget: ``metadata["astro"]["stats"]``
    (one ``{"fwhm": px, "n_stars": n}`` per frame, for FWHM/star-count weighting) and
    ``["reference"]`` (frame index), restricted to the frames :func:`layer_to_images`
    returns. ``(None, 0)`` when the layer has none.
    """
    astro = layer.metadata.get(ASTRO_KEY) if is_astro_layer(layer) else None
    if not astro or astro.get("kind") != "stack":
        return None, 0
    n = int(np.shape(layer.data)[0])
    include = list(astro.get("include") or [True] * n)
    kept = [i for i in range(n) if i >= len(include) or include[i]]
    stats = astro.get("stats")
    ref = astro.get("reference", 0)
    ref_pos = kept.index(ref) if ref in kept else 0
    if not isinstance(stats, (list, tuple)) or len(stats) != n:
        return None, ref_pos
    return [stats[i] for i in kept], ref_pos


def _nth(seq: Any, i: int, default: Any) -> Any:
    if isinstance(seq, (list, tuple)) and i < len(seq):
        return seq[i]
    return default
