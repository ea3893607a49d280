"""napari layers <-> :class:`~napari_astro.core.image.AstroImage`: the one place.

Conventions (the reader, the writers, the sample data and every widget use them):

* **Colour** images are shown as **one RGB layer** (``rgb=True``, data ``(H, W, 3)``,
  a view of the channel-first array, no copy). An astrophotographer looks at a colour
  stack as one picture (as PixInsight and Siril show it) and saves it as one file;
  three additive R/G/B layers would make every writer and step juggle three layers.
  **Display of colour** (see :func:`colour_display`): by default *unlinked* -- each
  channel gets its own auto-STF, as PixInsight's and Siril's unlinked auto-stretch,
  so a stack with a colour cast shows its sky and stars, not one colour. napari has
  one contrast-limits pair per RGB layer, so per-channel limits cannot be set on the
  layer; the layer's *data* are then a display copy (each channel through its own
  histogram transformation, values in [0, 1]) and the **linear data are kept** in
  ``metadata["astro"]["linear"]``, which is what steps, writers and
  :func:`layer_to_image` read. Three additive R/G/B layers were rejected: every
  picker, step and writer would have to reassemble one image from three layers.
  :func:`set_linked_display` switches to *linked* (the layer shows the linear data
  with one contrast-limits/gamma pair, no copy).
* **Raw CFA frames** opened by the reader show a quick bilinear-debayered colour
  preview (no checkerboard at fit-to-window zoom); the mosaic stays in
  ``metadata["astro"]["mosaic"]`` (``kind = "cfa-preview"``) and is what
  :func:`layer_to_image` returns, so a step sees what the file holds.
* **Mono** and raw **CFA mosaics** are single 2-D grey layers; a mosaic keeps its
  pattern in the metadata (``bayer``) so calibration/debayering can use it.
* **Stacks** of frames (e.g. registered frames) are one layer ``(N, H, W)`` or
  ``(N, H, W, 3)`` with ``kind = "stack"``; a colour stack shows a lazy (dask,
  frame by frame) unlinked display of its linear frames kept in ``["linear"]``.
* Provenance: ``layer.metadata["astro"]`` is a dict with ``header``
  (``fits.Header``), ``history`` (list of str), ``bayer``, ``path``, ``mask``
  (optional ``(H, W)`` bool) and ``kind`` (``"image"`` or ``"stack"``; stacks also
  ``headers``/``histories``/``paths`` lists). Writers and steps read it back, so
  HISTORY survives a round trip through napari.

Nothing here imports Qt; napari is imported lazily, only by the functions that add
layers (:func:`add_layers`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..core.image import AstroImage

__all__ = ["ASTRO_KEY", "image_to_layer_data", "images_to_stack_layer_data", "layer_to_image",
           "layer_data_to_image", "layer_to_images", "display_settings", "is_astro_layer",
           "mask_layer_data", "included_frame_stats", "add_layers", "colour_display",
           "set_linked_display", "is_stretched", "cfa_preview_layer_data"]

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


#: Step ids whose output is no longer linear (shown 1:1, no auto-stretch on top).
_NONLINEAR = ("post.stf", "post.ht", "post.arcsinh", "post.ghs", "post.curves")


def is_stretched(img: AstroImage) -> bool:
    """True if a HISTORY line says a non-linear step (a stretch, curves) made ``img``."""
    for line in img.history or ():
        step = str(line).split(" ", 1)[0].lower()
        if step in _NONLINEAR:
            return True
    return False


def colour_display(data: np.ndarray, *, linked: bool = False) -> tuple[np.ndarray, dict]:
    """A display copy of a linear colour image: the auto-STF of each channel.

    Parameters
    ----------
    data : ndarray
        ``(3, H, W)`` linear values (about [0, 1]).
    linked : bool, default False
        One STF for the three channels (keeps a colour cast visible) instead of one
        per channel.

    Returns
    -------
    display : ndarray
        ``(H, W, 3)`` float32 in [0, 1] (a new array; ``data`` is not changed).
    info : dict
        ``{"mode": "unlinked"|"linked", "stf": [(shadows, midtones, highlights)] * 3,
        "limits": [(lo, hi)] * 3}``; ``limits`` are each channel's black and white
        points in the linear data's units.
    """
    from ..core.stretch import histogram_transform, stf_channel_parameters

    d = np.asarray(data, dtype=np.float32)
    # ~250k samples per channel fix the STF to well under 1e-3 and keep it fast.
    step = max(1, int(np.sqrt(d.shape[1] * d.shape[2] / 250_000)))
    sample = np.nan_to_num(np.clip(d[:, ::step, ::step], 0.0, 1.0))
    stf = stf_channel_parameters(sample, linked=linked)
    shadows = [s for s, _, _ in stf]
    highlights = [max(h, s + 1e-6) for s, _, h in stf]
    mids = [m for _, m, _ in stf]
    # histogram_transform clips to [shadows, highlights] itself (and maps NaN to 0).
    disp = histogram_transform(d, shadows, mids, highlights)
    info = {"mode": "linked" if linked else "unlinked",
            "stf": [tuple(float(v) for v in t) for t in stf],
            "limits": [(float(s), float(h)) for s, h in zip(shadows, highlights)]}
    return np.moveaxis(disp, 0, -1), info  # (H, W, 3) view, as for linear data


def set_linked_display(layer: Any, linked: bool) -> None:
    """Switch a colour layer's display between unlinked (default) and linked.

    Unlinked: the layer shows :func:`colour_display` (one STF per channel), the linear
    data in ``metadata["astro"]["linear"]``. Linked: the layer shows the linear data
    with one contrast-limits/gamma pair (:func:`display_settings`), no copy.
    """
    astro = layer.metadata.get(ASTRO_KEY) if is_astro_layer(layer) else None
    if not getattr(layer, "rgb", False):
        return
    if astro is None:
        astro = {}
        layer.metadata[ASTRO_KEY] = astro
    linear = astro.get("linear")
    if linear is None or np.shape(linear) != np.shape(layer.data):
        linear = layer.data
        astro["linear"] = linear
    if linked:
        settings = display_settings(linear, rgb=True)
        layer.data = linear
        layer.contrast_limits = settings["contrast_limits"]
        layer.gamma = settings["gamma"]
        astro["display"] = {"mode": "linked", "limits": [tuple(settings["contrast_limits"])] * 3}
    else:
        disp, info = colour_display(np.moveaxis(np.asarray(linear), -1, 0))
        layer.data = disp
        layer.contrast_limits = (0.0, 1.0)
        layer.gamma = 1.0
        astro["display"] = info


def is_astro_layer(layer: Any) -> bool:
    """True for image layers that carry our provenance metadata."""
    return isinstance(getattr(layer, "metadata", None), Mapping) and ASTRO_KEY in layer.metadata


# --------------------------------------------------------------------------- image -> layer
def _astro_meta(img: AstroImage, kind: str = "image") -> dict[str, Any]:
    return {"header": img.header, "history": list(img.history), "bayer": img.bayer,
            "path": img.path, "mask": img.mask, "kind": kind}


def image_to_layer_data(img: AstroImage, name: str | None = None, *, stretch: bool = True,
                        linked: bool = False, **kwargs: Any) -> LayerDataTuple:
    """A napari image ``LayerDataTuple`` for ``img`` (see the module conventions).

    Parameters
    ----------
    img : AstroImage
        Mono/CFA ``(H, W)`` or colour ``(3, H, W)``.
    name : str, optional
        Layer name (default: the file's stem, else ``"image"``).
    stretch : bool, default True
        Auto-stretch the display of a linear image: a colour one per channel (a
        display copy, see :func:`colour_display`), a mono one by contrast limits and
        gamma (:func:`display_settings`). An image a stretch step made is shown 1:1.
    linked : bool, default False
        Colour: one display stretch for all channels (the layer shows the linear
        data with one contrast-limits pair).
    **kwargs
        More ``add_image`` keyword arguments (override the defaults).
    """
    if name is None:
        from pathlib import Path

        name = Path(img.path).name if img.path else "image"
        if img.bayer:
            name = f"{name} [CFA {img.bayer}]"
    meta = _astro_meta(img)
    if img.is_color:
        data = np.moveaxis(img.data, 0, -1)  # (H, W, 3) view, no copy
        opts: dict[str, Any] = {"rgb": True}
    else:
        data = img.data
        opts = {"rgb": False, "colormap": "gray"}
    opts["name"] = name
    opts["metadata"] = {ASTRO_KEY: meta}
    if stretch and is_stretched(img):
        # Already a display image: 1:1, an auto-stretch on top would stretch it twice.
        opts.update(contrast_limits=(0.0, 1.0), gamma=1.0)
    elif stretch and img.is_color and not linked:
        meta["linear"] = data
        data, meta["display"] = colour_display(img.data)
        opts.update(contrast_limits=(0.0, 1.0), gamma=1.0)
    elif stretch:
        opts.update(display_settings(data, rgb=img.is_color))
        if img.is_color:
            meta["display"] = {"mode": "linked",
                               "limits": [tuple(opts["contrast_limits"])] * 3}
    opts.update(kwargs)
    return (data, opts, "image")


def cfa_preview_layer_data(img: AstroImage, name: str | None = None, *,
                           method: str = "bilinear", **kwargs: Any) -> LayerDataTuple:
    """A raw CFA frame as a quick debayered colour preview; the mosaic in the metadata.

    Shown at fit-to-window zoom, a mosaic is a checkerboard moiré; a bilinear
    demosaic of the same pixels (~0.1 s for 1920x1080 with numba) is what the eye
    needs. ``metadata["astro"]``: ``kind = "cfa-preview"``, ``mosaic`` (the 2-D raw
    array, not copied) and ``bayer``; :func:`layer_to_image` returns the mosaic.
    """
    from pathlib import Path

    from ..core.debayer import debayer

    if name is None:
        name = f"{Path(img.path).name if img.path else 'image'} [CFA {img.bayer} preview]"
    rgb = debayer(img, method=method)
    data = image_to_layer_data(rgb, name, **kwargs)
    astro = data[1]["metadata"][ASTRO_KEY]
    astro.update(kind="cfa-preview", mosaic=img.data, bayer=img.bayer,
                 header=img.header, history=list(img.history), mask=img.mask)
    return data


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
    if stretch and color:
        # Unlinked display as for one colour image, computed lazily frame by frame
        # (a dask array over the linear stack): a display copy of N frames would
        # double the memory of the stack.
        meta["linear"] = data
        data, meta["display"] = _lazy_colour_display(data)
        opts.update(contrast_limits=(0.0, 1.0), gamma=1.0)
    elif stretch:
        opts.update(display_settings(data[0], rgb=color))
    opts.update(kwargs)
    return (data, opts, "image")


def _lazy_colour_display(stack: np.ndarray) -> tuple[Any, dict]:
    """``(N, H, W, 3)`` linear frames -> a dask array of their display (the first
    frame's per-channel STF applied to every frame, so frames compare on screen)."""
    import dask.array as da

    from ..core.stretch import histogram_transform

    _, info = colour_display(np.moveaxis(stack[0], -1, 0))
    s = [t[0] for t in info["stf"]]
    m = [t[1] for t in info["stf"]]
    h = [hi for _, hi in info["limits"]]

    def frame(block: np.ndarray) -> np.ndarray:
        out = histogram_transform(np.moveaxis(block[0], -1, 0), s, m, h)
        return np.moveaxis(out, 0, -1)[None]

    lazy = da.from_array(stack, chunks=(1, *stack.shape[1:])).map_blocks(frame, dtype=np.float32)
    return lazy, info


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
    if astro.get("kind") == "cfa-preview" and astro.get("mosaic") is not None:
        # A raw frame's preview: the step/writer gets the mosaic the file holds.
        data = astro["mosaic"]
        meta["rgb"] = False
    elif astro.get("linear") is not None and np.shape(astro["linear"]) == np.shape(data):
        # Unlinked colour display: the layer shows a display copy, the linear data
        # are here.
        data = astro["linear"]
    arr = _as_float01(data)
    rgb = bool(meta.get("rgb", False))
    if rgb or (arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3)):
        arr = np.moveaxis(arr[..., :3], -1, 0)  # view
    if arr.ndim == 3 and arr.shape[0] not in (1, 3):
        raise ValueError(f"layer {meta.get('name', '')!r}: a stack of {arr.shape[0]} frames is "
                         "not one image (use layer_to_images)")
    from ..core.header import Header, is_header

    header = astro.get("header")
    header = header.copy() if is_header(header) else Header()
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
    linear = astro.get("linear")
    if linear is not None and np.shape(linear) == np.shape(data):
        data = linear  # the layer shows a (lazy) display of these
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


# --------------------------------------------------------------------------- adding layers
def _is_layer(layer: Any, layer_type: str) -> bool:
    """``isinstance`` by napari layer type name (works through napari's plugin proxies,
    which forbid private attributes such as ``_type_string``)."""
    import napari.layers

    cls = getattr(napari.layers, layer_type.capitalize(), None)
    return cls is not None and isinstance(layer, cls)


def add_layers(viewer: Any, layer_data: Sequence[tuple], *, replace: bool = True) -> list:
    """Add ``LayerDataTuple`` s to the viewer; a layer of the same name is updated.

    Re-running a step then refreshes its output instead of piling up copies.
    """
    from napari.layers import Layer

    out = []
    for data, kwargs, layer_type in layer_data:
        name = kwargs.get("name")
        old = None
        if replace and name is not None and name in viewer.layers:
            old = viewer.layers[name]
        if (old is not None and layer_type == "image" and _is_layer(old, "image")
                and getattr(old, "rgb", False) == kwargs.get("rgb", False)
                and old.data.ndim == getattr(data, "ndim", -1)):
            old.data = data
            for key in ("metadata", "contrast_limits", "gamma", "colormap", "opacity"):
                if key in kwargs:
                    setattr(old, key, kwargs[key])
            out.append(old)
            continue
        if old is not None:
            viewer.layers.remove(old)
        out.append(viewer.add_layer(Layer.create(data, kwargs, layer_type)))
    return out
