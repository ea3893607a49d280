"""What defines a simulated night (:class:`NightParams`), what was simulated
(:class:`NightTruth`) and the CFA helpers the simulator and the tests share."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInputError
from ..debayer.cfa import cfa_color_index
from ..debayer.cfa import mosaic as _mosaic
from ..image import BAYER_PATTERNS


_FULL = 65535.0


# --------------------------------------------------------------------------------------
# parameters and truth
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NightParams:
    """Everything that defines a simulated night (defaults: a cooled 26 MP-class OSC
    camera cropped to 2000 x 1500 on an 480 mm refractor under a suburban sky).

    Sizes and counts
        width, height : int, px (default 2000 x 1500). n_lights, n_darks, n_flats,
        n_biases (20 each), n_darkflats (0).
    Sensor
        mono (False) : mono sensor with an L filter instead of one-shot colour.
        bayer ("RGGB") : CFA pattern of ``data[0, 0]`` (ROWORDER TOP-DOWN).
        gain (0.8 e-/ADU), gain_setting (100, the camera's GAIN keyword), offset_setting
        (50), read_noise (3.5 e- rms), bias_level (800 ADU), bias_pixel_sigma (2 ADU,
        fixed per-pixel pattern), bias_column_sigma (3 ADU, fixed column pattern),
        dark_current (0.05 e-/s/px, mean of the thermal map outside hot pixels),
        dark_nonuniformity (0.3, sigma of the log-normal thermal map),
        hot_pixel_fraction (2e-4), very_hot_fraction (0.1 of hot pixels saturate a
        light), dead_pixel_fraction (2e-5; stuck at a low value in every frame, at
        least 2), prnu (0.005, per-pixel response non-uniformity rms).
    Acquisition
        seed (0), exposure (120 s), flat_exposure (2 s), temperature (-10 C set point),
        start ("2024-03-15T20:30:00" UTC of the first light), filter_name (None: OSC
        without filter; mono: "L"), filter_transmission ((1, 1, 1) for R, G, B: e.g.
        (1, 0, 0) for a red-only scene).
    Optics
        vignetting (0.25: fractional drop at the farthest corner), vignetting_center
        ((0.02, -0.015), optical axis offset as a fraction of width/height),
        dust_motes (4), dust_depth (0.04), dust_radius (40 px, scaled down for
        small frames), flat_level (0.45 of full scale in the G channel at the
        optical centre), flat_color ((0.65, 1.0, 0.8) response of R, G, B sites to the
        flat light), fwhm (3.0 px), moffat_beta (3.0), fwhm_variation (0.08,
        relative seeing change between lights).
    Sky
        sky_rate (8 e-/s/px in G at the field centre), sky_color ((1.3, 1.0, 0.7)),
        sky_gradient (0.15: relative change from centre to the edge along
        sky_gradient_angle (30 deg)), sky_variation (0.03) and
        transparency_variation (0.03) between lights, star_density (2000 stars per
        Mpx brighter than star_flux_min), star_flux_min (5 e-/s), star_flux_range
        (3000: brightest/faintest), star_slope (0.75: N(>F) ~ F**-slope),
        min_saturated (2 stars at least saturate in the reference light),
        nebula_brightness (0.35: nebula peak / sky background).
    Pointing and events
        dither (20 px: max offset per axis), rotation (0.3 deg max), cosmic_rays (8 per
        light on average; darks get the same rate per second), satellite (True: one
        light, not the reference, has a trail), object_name, ra (deg), dec (deg).
    """

    width: int = 2000
    height: int = 1500
    n_lights: int = 20
    n_darks: int = 20
    n_flats: int = 20
    n_biases: int = 20
    n_darkflats: int = 0
    mono: bool = False
    bayer: str = "RGGB"
    seed: int = 0
    exposure: float = 120.0
    flat_exposure: float = 2.0
    temperature: float = -10.0
    gain: float = 0.8
    gain_setting: int = 100
    offset_setting: int = 50
    read_noise: float = 3.5
    bias_level: float = 800.0
    bias_pixel_sigma: float = 2.0
    bias_column_sigma: float = 3.0
    dark_current: float = 0.05
    dark_nonuniformity: float = 0.3
    hot_pixel_fraction: float = 2e-4
    very_hot_fraction: float = 0.1
    dead_pixel_fraction: float = 2e-5
    prnu: float = 0.005
    vignetting: float = 0.25
    vignetting_center: tuple = (0.02, -0.015)
    dust_motes: int = 4
    dust_depth: float = 0.04
    dust_radius: float = 40.0
    flat_level: float = 0.45
    flat_color: tuple = (0.65, 1.0, 0.8)
    fwhm: float = 3.0
    moffat_beta: float = 3.0
    fwhm_variation: float = 0.08
    sky_rate: float = 8.0
    sky_color: tuple = (1.3, 1.0, 0.7)
    sky_gradient: float = 0.15
    sky_gradient_angle: float = 30.0
    sky_variation: float = 0.03
    transparency_variation: float = 0.03
    star_density: float = 2000.0
    star_flux_min: float = 5.0
    star_flux_range: float = 3000.0
    star_slope: float = 0.75
    min_saturated: int = 2
    nebula_brightness: float = 0.35
    dither: float = 20.0
    rotation: float = 0.3
    cosmic_rays: float = 8.0
    satellite: bool = True
    filter_name: Optional[str] = None
    filter_transmission: tuple = (1.0, 1.0, 1.0)
    start: str = "2024-03-15T20:30:00"
    object_name: str = "SIM Nebula"
    ra: float = 314.75
    dec: float = 44.53

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise BadInputError("size", f"{self.width}x{self.height} is too small (min 16x16)")
        if self.width % 2 or self.height % 2:
            raise BadInputError("size", f"{self.width}x{self.height}: width and height must "
                                "be even (whole CFA cells)")
        if str(self.bayer).upper() not in BAYER_PATTERNS:
            raise BadInputError("bayer", f"unknown CFA pattern {self.bayer!r}")
        for name in ("n_lights", "n_darks", "n_flats", "n_biases", "n_darkflats"):
            if getattr(self, name) < 0:
                raise BadInputError(name, "must not be negative")
        if self.gain <= 0 or self.exposure <= 0 or self.flat_exposure <= 0:
            raise BadInputError("params", "gain and exposures must be positive")
        for name in ("vignetting_center", "flat_color", "sky_color", "filter_transmission"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def to_dict(self) -> dict:
        """JSON-ready dict of all fields."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "NightParams":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in d.items() if k in names})


@dataclasses.dataclass
class NightTruth:
    """What was simulated (returned by :func:`simulate_night` and :func:`load_truth`).

    Attributes
    ----------
    root : Path
        The night's folder.
    lights, darks, flats, biases, darkflats : list of Path
        The frames written, in acquisition order.
    sky : ndarray, float32, (3, H, W) colour or (H, W) mono
        Noiseless sky in the reference light's grid, in the units of a perfectly
        calibrated light (see the module docstring), before CFA mosaicking.
    reference_index : int
        Index of the reference light (0): its transform is the identity.
    transforms : list of (3, 3) ndarray
        Per light: maps light pixel ``(x=col, y=row, 1)`` to reference pixel coords.
    stars : numpy recarray
        Stars whose centre lies in the reference frame: fields ``x, y`` (reference
        px), ``flux`` (total, sky units; colour: mean of R, G, B), ``flux_r, flux_g,
        flux_b``, ``fwhm`` (px in the reference light), ``saturated`` (bool: the core
        clips at 65535 ADU in the reference light).
    hot_pixels : ndarray, int, (N, 2)
        ``(row, col)`` of hot pixels (dark rate ``hot_rates`` e-/s).
    hot_rates : ndarray, float, (N,)
    cold_pixels : ndarray, int, (M, 2)
        ``(row, col)`` of dead pixels stuck at a low ADU value in every frame.
    params : NightParams
    info : dict
        Everything else of ``truth.json`` (per-light sky level and transparency,
        FWHM, cosmic rays, satellite trail, dust motes, vignetting, flat_norm...).
    """

    root: Path
    lights: list
    darks: list
    flats: list
    biases: list
    darkflats: list
    sky: np.ndarray
    reference_index: int
    transforms: list
    stars: np.recarray
    hot_pixels: np.ndarray
    hot_rates: np.ndarray
    cold_pixels: np.ndarray
    params: NightParams
    info: dict

    @property
    def flat_norm(self) -> np.ndarray:
        """``m_c``: mean sensor response per colour (see module docstring)."""
        return np.asarray(self.info["flat_norm"], dtype=np.float64)


# --------------------------------------------------------------------------------------
# CFA helpers
# --------------------------------------------------------------------------------------
def cfa_channel_map(pattern: Optional[str]) -> np.ndarray:
    """(2, 2) int array: channel index (0=R, 1=G, 2=B) of ``data[y % 2, x % 2]``.

    ``pattern=None`` (mono) gives all zeros. :func:`core.debayer.cfa_color_index`
    with the simulator's option name in the error.
    """
    if pattern is None:
        return np.zeros((2, 2), np.int64)
    if pattern.upper() not in BAYER_PATTERNS:
        raise BadInputError("bayer", f"unknown CFA pattern {pattern!r}")
    return cfa_color_index(pattern)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a ``(3, H, W)`` image through a CFA: ``(H, W)`` with one colour per pixel
    (:func:`core.debayer.mosaic` keeping the input's dtype)."""
    return _mosaic(rgb, pattern, dtype=None)
