"""Plate-solve and centre: expose, solve (``napari_astro.core.solve``), sync, re-slew
until the field centre is within a tolerance of the target (1 arcmin by default)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..core.errors import BadInputError

__all__ = ["CentreResult", "centre_on", "solve_frame"]


@dataclasses.dataclass
class CentreResult:
    """Outcome of :func:`centre_on`: the error after each solve (arcmin) and the last
    solution's centre (J2000 degrees)."""

    errors_arcmin: list
    ra_deg: float
    dec_deg: float

    @property
    def error_arcmin(self) -> float:
        return float(self.errors_arcmin[-1])


def solve_frame(frame, *, timeout: float = 60.0):
    """Plate-solve a camera :class:`~.devices.Frame` (hints from its INDI header:
    RA/DEC of the mount's pointing and SCALE)."""
    from ..core.image import AstroImage
    from ..core.solve import SolveHints, solve_hints, solve_image

    data = frame.data.astype(np.float32) / np.float32(frame.full_scale)
    image = AstroImage(data, header=frame.header.copy())
    hints = solve_hints(frame.header)
    scale = frame.header.get("SCALE")
    if scale:   # INDI's SCALE is arcsec/px of the binned frame
        s = float(scale)
        hints = SolveHints(hints.ra_deg, hints.dec_deg, s, (0.8 * s, 1.25 * s))
    return solve_image(image, hints=hints, timeout=timeout, sip_order=0)


def centre_on(eq, ra_deg: float, dec_deg: float, *, exposure: float = 2.0,
              tolerance_arcmin: float = 1.0, max_iterations: int = 5, timeout: float = 60.0,
              log: Callable[[str], None] | None = None) -> CentreResult:
    """Bring (``ra_deg``, ``dec_deg``) (J2000) to the frame centre.

    Each round: expose, solve, and if the centre is off by more than the tolerance,
    sync the mount on the solved position and slew to the target again.
    """
    from ..core.catalog import angular_separation
    from .coords import j2000_to_jnow

    log = log or (lambda m: None)
    errors = []
    for _ in range(max_iterations):
        frame = eq.camera.expose(exposure, "light", timeout=exposure + 60)
        sol = solve_frame(frame, timeout=timeout)
        err = float(angular_separation(sol.ra_deg, sol.dec_deg, ra_deg, dec_deg)) * 60.0
        errors.append(err)
        log(f"centring: {err:.2f}' from the target")
        if err <= tolerance_arcmin:
            return CentreResult(errors, sol.ra_deg, sol.dec_deg)
        eq.mount.sync(*j2000_to_jnow(sol.ra_deg, sol.dec_deg))
        eq.mount.goto(*j2000_to_jnow(ra_deg, dec_deg))
    raise BadInputError("centre", f"still {errors[-1]:.1f}' from the target after "
                        f"{max_iterations} plate solves")
