"""The one image type of napari-astro.

Every reader returns an :class:`AstroImage`, every step takes and returns one, every
writer stores one.  Data are float32, linear, nominally in [0, 1]:

* mono or raw CFA mosaics: shape ``(H, W)``; a CFA mosaic carries its pattern in
  :attr:`AstroImage.bayer` (already corrected for ROWORDER and X/YBAYROFF so that
  ``bayer`` describes pixel ``data[0, 0]`` onwards);
* colour: shape ``(3, H, W)``, channel-first, R, G, B.

Row 0 of ``data`` is FITS row 1 (astropy's natural order); no flips are applied on
read, so the output grid of every step equals the input's.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import numpy as np

from .header import Header

__all__ = ["AstroImage", "BAYER_PATTERNS", "format_history"]

#: CFA patterns we support, named by the colours of the 2x2 cell read row by row.
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def format_history(step_id: str, params: Mapping[str, Any] | None = None) -> str:
    """Render one provenance line: ``"<step id> {json params}"``.

    Parameters
    ----------
    step_id : str
        Stable id of the step, e.g. ``"post.arcsinh"``.
    params : mapping, optional
        JSON-serialisable parameters of the step.
    """
    if not params:
        return step_id
    return f"{step_id} {json.dumps(dict(params), sort_keys=True, default=str)}"


@dataclasses.dataclass
class AstroImage:
    """A linear astronomical image.

    Parameters
    ----------
    data : ndarray
        float32, ``(H, W)`` or ``(3, H, W)``; values nominally in [0, 1].
    header : napari_astro.core.header.Header
        Metadata (FITS keywords; astropy's ``Header`` interface, without importing
        astropy; an :class:`astropy.io.fits.Header` given here is converted).
        Readers fill it from the source file; HISTORY cards are kept in
        :attr:`history` instead and merged on write.
    mask : ndarray of bool, optional
        ``(H, W)``: True where the pixel is valid (e.g. a registration footprint).
    history : list of str
        Provenance lines, oldest first (see :func:`format_history`).
    bayer : str, optional
        CFA pattern of a raw one-shot-colour mosaic (one of :data:`BAYER_PATTERNS`),
        None for mono or already debayered data.
    path : str, optional
        File the image was read from, for messages.
    """

    data: np.ndarray
    header: Header = dataclasses.field(default_factory=Header)
    mask: np.ndarray | None = None
    history: list[str] = dataclasses.field(default_factory=list)
    bayer: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[0] != 3):
            raise ValueError(f"image data must be (H, W) or (3, H, W), got {data.shape}")
        self.data = data
        if self.header is None:
            self.header = Header()
        elif not isinstance(self.header, Header) and hasattr(self.header, "cards"):
            self.header = Header.from_astropy(self.header)
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)
            if self.mask.shape != self.shape2d:
                raise ValueError(f"mask shape {self.mask.shape} != image {self.shape2d}")
        if self.bayer is not None:
            self.bayer = self.bayer.upper()
            if self.bayer not in BAYER_PATTERNS:
                raise ValueError(f"unknown CFA pattern {self.bayer!r}")
            if data.ndim != 2:
                raise ValueError("a CFA mosaic must be 2-D")

    # -- shape helpers -------------------------------------------------------
    @property
    def is_color(self) -> bool:
        """True for ``(3, H, W)`` data."""
        return self.data.ndim == 3

    @property
    def is_cfa(self) -> bool:
        """True for a raw one-shot-colour mosaic that still needs debayering."""
        return self.bayer is not None

    @property
    def shape2d(self) -> tuple[int, int]:
        """``(H, W)`` of the pixel grid."""
        return tuple(self.data.shape[-2:])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return 3 if self.is_color else 1

    def channel_views(self) -> list[np.ndarray]:
        """List of 2-D views, one per channel."""
        return [self.data[c] for c in range(3)] if self.is_color else [self.data]

    # -- derivation ----------------------------------------------------------
    def replace(self, **changes: Any) -> "AstroImage":
        """A new image with some fields replaced; header and history are copied."""
        fields = dict(
            data=self.data,
            header=self.header.copy(),
            mask=self.mask,
            history=list(self.history),
            bayer=self.bayer,
            path=self.path,
        )
        fields.update(changes)
        return AstroImage(**fields)

    def derive(self, data: np.ndarray, step_id: str, params: Mapping[str, Any] | None = None,
               **changes: Any) -> "AstroImage":
        """A new image with new ``data`` and one more HISTORY line for ``step_id``."""
        out = self.replace(data=data, **changes)
        out.add_history(step_id, params)
        return out

    def add_history(self, step_id: str, params: Mapping[str, Any] | None = None) -> None:
        """Append a provenance line (see :func:`format_history`)."""
        self.history.append(format_history(step_id, params))

    def copy(self) -> "AstroImage":
        return self.replace(data=self.data.copy(),
                            mask=None if self.mask is None else self.mask.copy())

    # -- convenience metadata -----------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """Header value or ``default``."""
        try:
            return self.header[key]
        except KeyError:
            return default

    @property
    def exposure(self) -> float | None:
        """Exposure time in seconds (EXPTIME or EXPOSURE), None if unknown."""
        for key in ("EXPTIME", "EXPOSURE"):
            v = self.get(key)
            if v is not None:
                try:
                    return float(v)
                except (TypeError, ValueError):
                    pass
        return None

    def luminance(self) -> np.ndarray:
        """``(H, W)`` float32 luminance: mean of channels for colour, data for mono."""
        if self.is_color:
            return self.data.mean(axis=0, dtype=np.float32)
        return self.data

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        kind = "colour" if self.is_color else ("CFA " + self.bayer if self.bayer else "mono")
        return f"AstroImage({kind}, shape={self.data.shape}, path={self.path!r})"
