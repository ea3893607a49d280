"""The transform model, plain data: a 3x3 matrix acting on ``(x, y, 1)`` column
vectors that maps source-frame pixels to reference-frame pixels, plus the model name;
it round-trips through JSON so a transform found on one filter can be re-applied to
another."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["Transform", "RegistrationError", "MODELS", "INTERPOLATIONS"]

MODELS = ("shift", "similarity", "affine", "homography")
INTERPOLATIONS = ("lanczos3", "bicubic", "bilinear")


class RegistrationError(RuntimeError):
    """A frame could not be matched to the reference (the message says why)."""


# --------------------------------------------------------------------------- Transform
@dataclasses.dataclass(frozen=True)
class Transform:
    """A plane transform: source pixel ``(x, y, 1)`` -> reference pixel.

    Parameters
    ----------
    matrix : ndarray, shape (3, 3)
        Homogeneous matrix (float64); the last row is ``[0, 0, 1]`` except for
        homographies.
    model : str, default "affine"
        One of :data:`MODELS` (informative: what was fitted).
    """

    matrix: np.ndarray
    model: str = "affine"

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)
        if m.shape != (3, 3) or not np.isfinite(m).all():
            raise ValueError(f"a transform matrix must be a finite 3x3 array, got {m.shape}")
        if m[2, 2] != 0:
            m = m / m[2, 2]
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    # -- constructors ---------------------------------------------------------
    @classmethod
    def identity(cls) -> "Transform":
        return cls(np.eye(3), "shift")

    @classmethod
    def from_shift(cls, dx: float, dy: float) -> "Transform":
        m = np.eye(3)
        m[0, 2], m[1, 2] = dx, dy
        return cls(m, "shift")

    @classmethod
    def from_similarity(cls, *, angle_deg: float = 0.0, scale: float = 1.0, dx: float = 0.0,
                        dy: float = 0.0, flip: bool = False,
                        center: tuple[float, float] = (0.0, 0.0)) -> "Transform":
        """Rotation by ``angle_deg`` (counter-clockwise in x/y) and ``scale`` about
        ``center``, an optional mirror (x -> -x about ``center``, applied first),
        then a shift ``(dx, dy)``."""
        a = math.radians(angle_deg)
        c, s = scale * math.cos(a), scale * math.sin(a)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        if flip:
            rot = rot @ np.diag([-1.0, 1.0, 1.0])
        cx, cy = center
        to_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
        back = np.array([[1, 0, cx + dx], [0, 1, cy + dy], [0, 0, 1.0]])
        return cls(back @ rot @ to_c, "similarity")

    # -- algebra --------------------------------------------------------------
    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` source points to the reference frame."""
        return _apply_matrix(self.matrix, np.asarray(xy, dtype=np.float64))

    apply = __call__

    def inverse(self) -> "Transform":
        """Reference -> source."""
        return Transform(np.linalg.inv(self.matrix), self.model)

    def compose(self, other: "Transform") -> "Transform":
        """``self`` after ``other``: the matrix ``self.matrix @ other.matrix``.

        If ``other`` maps A -> B and ``self`` maps B -> C, the result maps A -> C.
        """
        order = {m: i for i, m in enumerate(MODELS)}
        model = max(self.model, other.model, key=lambda m: order.get(m, 2))
        return Transform(self.matrix @ other.matrix, model)

    # -- properties for tables ------------------------------------------------
    @property
    def shift(self) -> tuple[float, float]:
        """Translation part ``(dx, dy)`` in pixels."""
        return float(self.matrix[0, 2]), float(self.matrix[1, 2])

    @property
    def rotation_deg(self) -> float:
        """Rotation angle (degrees, counter-clockwise in x/y) of the linear part."""
        m = self.matrix
        if self.is_flipped:
            return math.degrees(math.atan2(m[1, 0], -m[0, 0]))
        return math.degrees(math.atan2(m[1, 0], m[0, 0]))

    @property
    def scale(self) -> float:
        """Geometric-mean scale of the linear part."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))

    @property
    def is_flipped(self) -> bool:
        """True when the transform mirrors the image (negative determinant)."""
        return bool(np.linalg.det(self.matrix[:2, :2]) < 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"model": str, "matrix": [[...], [...], [...]]}``."""
        return {"model": self.model, "matrix": self.matrix.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Transform":
        return cls(np.asarray(d["matrix"], dtype=np.float64), d.get("model", "affine"))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Transform) and self.model == other.model
                and np.array_equal(self.matrix, other.matrix))

    def __hash__(self) -> int:
        return hash((self.model, self.matrix.tobytes()))


def _apply_matrix(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    xy = np.atleast_2d(xy)
    out = xy @ m[:2, :2].T + m[:2, 2]
    if m[2, 0] != 0 or m[2, 1] != 0:
        wgt = xy @ m[2, :2] + m[2, 2]
        out = (xy @ m[:2, :2].T + m[:2, 2]) / wgt[:, None]
    return out
