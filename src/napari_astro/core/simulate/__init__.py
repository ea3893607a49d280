"""A night at the telescope, simulated, with its ground truth.

:func:`simulate_night` writes the raw frames a careful astrophotographer brings home
(bias, darks, flats, optional flat-darks and dithered lights, as 16-bit FITS with
NINA-style headers) and the noiseless truth they were made from, so that every later
step (calibration, registration, integration, post-processing) can be tested against
known answers. :func:`load_truth` reads that truth back.

The physics, per pixel of the sensor (electrons unless said otherwise)::

    bias  [ADU] = bias_level + pixel pattern + column pattern          (fixed)
    dark  [e]   = dark_rate(x, y) * t        (fixed thermal map, hot pixels)
    S(x, y)     = vignetting * dust motes * PRNU                        (fixed)
    light [e]   = Poisson(S * sky_c(T_k(x, y)) * t + dark) + cosmic rays
    flat  [e]   = Poisson(S * flat_level * flat_color_c + dark(t_flat))
    frame [ADU] = clip(round(e / gain + bias + N(0, read_noise / gain)), 0, 65535)

where ``c`` is the CFA colour of the pixel (or the single band of a mono sensor) and
``T_k`` maps light ``k``'s pixel to the reference light's pixel (light 0).

Units of the truth (``truth/sky.fits``, ``NightTruth.sky``): the sky that a
*perfectly* calibrated reference light shows, in the package's data units (ADU/65535)::

    calibrated = (L - D) / (F_c / mean_c(F_c)),   F = master flat minus bias,

with the flat normalised **per CFA colour** (``mean_c`` = mean over the pixels of
colour ``c``; mono: the plain mean). Hence ``sky_c = sky electrons_c / gain / 65535
* m_c`` with ``m_c`` = mean of ``S`` over the colour-``c`` pixels (stored as
``flat_norm`` in ``truth.json``). A calibration that normalises the flat by its
global mean instead gets ``sky_c * flat_color_c / mean(flat_color over the CFA)``.
Stars in ``stars.csv`` carry their total flux in the same units.

Randomness comes from a counter-based generator (splitmix64 per pixel, Hörmann's PTRS
for Poisson), so frames are identical for a seed whatever the number of threads, and
each frame's noise is independent of how many other frames are made.

The package: :mod:`.params` (what defines a night, what was simulated, CFA helpers),
:mod:`.render` (numba kernels: sensor exposure, smooth sky, stars, trails),
:mod:`.model` (:class:`NightModel`, the fixed parts of a night and per-frame
rendering), :mod:`.night` (:func:`simulate_night`: the FITS frames) and :mod:`.truth`
(writing and reading the truth).
"""

from .model import NightModel
from .night import simulate_night
from .params import NightParams, NightTruth, cfa_channel_map, mosaic
from .truth import load_truth

__all__ = ["NightParams", "NightTruth", "simulate_night", "load_truth", "NightModel",
           "cfa_channel_map", "mosaic"]
