"""Small device classes over :class:`~.client.IndiClient`: camera, mount, focuser,
filter wheel, light panel, guide camera.

Each wraps one INDI device by name and the standard INDI properties every driver of
its kind offers (``CCD_EXPOSURE``, ``EQUATORIAL_EOD_COORD``, ``ABS_FOCUS_POSITION``,
``FILTER_SLOT``, ``FLAT_LIGHT_CONTROL``...), so the same code drives the simulators
and real hardware. Units: seconds, degrees Celsius, RA in hours (INDI's), Dec in
degrees, focuser steps.
"""

from __future__ import annotations

import dataclasses
import io
import queue
import threading
import time
import weakref
from typing import Any

import numpy as np

from .client import ConnectionLost, IndiClient, IndiError

__all__ = ["Camera", "GuideCamera", "GuideHead", "Mount", "Focuser", "FilterWheel", "LightPanel",
           "Frame", "Equipment"]

#: INDI CCD_FRAME_TYPE elements for our frame types.
_FRAME_TYPES = {"light": "FRAME_LIGHT", "dark": "FRAME_DARK", "bias": "FRAME_BIAS",
                "flat": "FRAME_FLAT", "darkflat": "FRAME_DARK"}
#: IMAGETYP values our own classifier (core/frames.py) reads back.
IMAGETYP = {"light": "Light Frame", "dark": "Dark Frame", "bias": "Bias Frame",
            "flat": "Flat Field", "darkflat": "Dark Flat"}


@dataclasses.dataclass
class Frame:
    """One exposure as it came from the camera.

    Attributes
    ----------
    data : ndarray (H, W)
        The camera's integers (uint16 for 16-bit cameras), row 0 first as sent.
    header : astropy.io.fits.Header
        The driver's header (INDI fills EXPTIME, CCD-TEMP, FILTER, RA/DEC, FOCUSPOS...).
    """

    data: np.ndarray
    header: Any

    @property
    def full_scale(self) -> float:
        bits = int(self.header.get("BITPIX", 16))
        return float(2 ** abs(bits) - 1) if bits > 0 else 1.0

    def median_fraction(self) -> float:
        """Median of the frame as a fraction of full scale (flats' auto-exposure)."""
        return float(np.median(self.data)) / self.full_scale


def parse_fits_blob(data: bytes) -> Frame:
    """A FITS BLOB -> :class:`Frame` (integers kept, header kept)."""
    from astropy.io import fits

    with fits.open(io.BytesIO(data), do_not_scale_image_data=False, memmap=False) as hdul:
        hdu = hdul[0]
        arr = np.array(hdu.data)
        header = hdu.header.copy()
    if arr.dtype.kind == "f" and "BZERO" in header:
        arr = arr.astype(np.uint16 if header.get("BITPIX") == 16 else np.int32)
    return Frame(arr, header)


class _Device:
    def __init__(self, client: IndiClient, name: str) -> None:
        self.client, self.name = client, name

    def connect(self, timeout: float = 15.0) -> None:
        self.client.connect_device(self.name, timeout)

    def disconnect(self) -> None:
        self.client.disconnect_device(self.name)

    @property
    def connected(self) -> bool:
        try:
            return bool(self.client.switch(self.name, "CONNECTION", timeout=1).get("CONNECT"))
        except IndiError:
            return False

    def has(self, prop: str) -> bool:
        return self.client.has_property(self.name, prop)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Camera(_Device):
    """A CCD/CMOS camera (INDI CCD interface)."""

    ccd = "CCD"          # property prefix; the guide head of a camera uses "GUIDER"
    _chip = "main"       # which of the device's BLOBs are ours (see _chip_of)

    def connect(self, timeout: float = 15.0) -> None:
        super().connect(timeout)
        self.client.enable_blobs(self.name)
        # frames come to us, not to a file on the server's disk
        if self.has("UPLOAD_MODE"):
            self.client.set_switch(self.name, "UPLOAD_MODE", ["UPLOAD_CLIENT"])

    # -- settings ---------------------------------------------------------------
    def info(self) -> dict[str, float]:
        return self.client.number(self.name, f"{self.ccd}_INFO")

    def set_binning(self, binning: int) -> None:
        self.client.set_number(self.name, f"{self.ccd}_BINNING",
                               {"HOR_BIN": binning, "VER_BIN": binning}, wait=10)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        """Region of interest in unbinned pixels."""
        self.client.set_number(self.name, f"{self.ccd}_FRAME",
                               {"X": x, "Y": y, "WIDTH": width, "HEIGHT": height}, wait=10)

    def full_frame(self) -> None:
        i = self.info()
        self.set_roi(0, 0, int(i[f"{self.ccd}_MAX_X"]), int(i[f"{self.ccd}_MAX_Y"]))

    def set_gain(self, gain: float) -> None:
        if self.has("CCD_GAIN"):
            self.client.set_number(self.name, "CCD_GAIN", {"GAIN": gain}, wait=10)
        elif self.has("CCD_CONTROLS"):
            self.client.set_number(self.name, "CCD_CONTROLS", {"Gain": gain}, wait=10)

    def set_offset(self, offset: float) -> None:
        if self.has("CCD_OFFSET"):
            self.client.set_number(self.name, "CCD_OFFSET", {"OFFSET": offset}, wait=10)
        elif self.has("CCD_CONTROLS"):
            self.client.set_number(self.name, "CCD_CONTROLS", {"Offset": offset}, wait=10)

    def gain(self) -> float | None:
        return self.client.number(self.name, "CCD_GAIN")["GAIN"] if self.has("CCD_GAIN") else None

    def offset(self) -> float | None:
        return self.client.number(self.name, "CCD_OFFSET")["OFFSET"] if self.has("CCD_OFFSET") else None

    def temperature(self) -> float | None:
        if not self.has("CCD_TEMPERATURE"):
            return None
        return self.client.number(self.name, "CCD_TEMPERATURE")["CCD_TEMPERATURE_VALUE"]

    def cool(self, target: float, *, wait: bool = True, tolerance: float = 0.5,
             timeout: float = 900.0) -> None:
        """Set the sensor to ``target`` deg C; with ``wait``, until within ``tolerance``."""
        if not self.has("CCD_TEMPERATURE"):
            raise IndiError(f"{self.name} has no temperature control")
        if self.has("CCD_COOLER"):
            self.client.set_switch(self.name, "CCD_COOLER", ["COOLER_ON"])
        self.client.set_number(self.name, "CCD_TEMPERATURE", {"CCD_TEMPERATURE_VALUE": target})
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while abs((self.temperature() or target) - target) > tolerance:
            if time.monotonic() > deadline:
                raise IndiError(f"{self.name}: {target} C not reached within {timeout:.0f} s "
                                f"(at {self.temperature():.1f} C)")
            time.sleep(0.5)

    def warm(self) -> None:
        if self.has("CCD_COOLER"):
            self.client.set_switch(self.name, "CCD_COOLER", ["COOLER_OFF"])

    def set_frame_type(self, kind: str) -> None:
        self.client.set_switch(self.name, f"{self.ccd}_FRAME_TYPE", [_FRAME_TYPES[kind]])

    def min_exposure(self) -> float:
        """The shortest exposure the driver accepts (bias frames), seconds."""
        prop = self.client.property(self.name, f"{self.ccd}_EXPOSURE")
        nv = self.client._pi.PropertyNumber(prop)  # noqa: SLF001 - min is not in number()
        return max(float(nv[0].getMin()), 0.0)

    # -- exposures ----------------------------------------------------------------
    def expose(self, seconds: float, kind: str = "light", *, timeout: float | None = None,
               retries: int = 0) -> Frame:
        """Take one exposure and return it (IndiError if none arrives in time).

        ``timeout`` [s] defaults to the exposure + 60 s (download and a slow driver).
        ``retries``: when no image arrived in time, abort the exposure and expose again
        up to this many times (the CCD simulator of indi 1.9.9 now and then delivers no
        image when both of its chips expose at once); the error then says how many
        tries. A dropped connection (ConnectionLost) is never retried here.
        """
        wait = timeout if timeout is not None else seconds + 60.0
        self.set_frame_type(kind)
        for attempt in range(int(retries) + 1):
            _chip_drain(self.client, self.name, self._chip)
            self.client.set_number(self.name, f"{self.ccd}_EXPOSURE",
                                   {f"{self.ccd}_EXPOSURE_VALUE": float(seconds)})
            try:
                blob = _chip_next(self.client, self.name, self._chip, wait)
                break
            except ConnectionLost:
                raise
            except IndiError:
                self.abort()
                if attempt == int(retries):
                    tries = f" ({attempt + 1} tries)" if attempt else ""
                    raise IndiError(f"{self.name}: no image arrived within {wait:.0f} s of "
                                    f"a {seconds:g} s exposure{tries}") from None
        if blob.format.lower() not in (".fits", ".fit", "fits"):
            raise IndiError(f"{self.name}: sent a {blob.format} image, not FITS")
        return parse_fits_blob(blob.data)

    def abort(self) -> None:
        try:
            self.client.set_switch(self.name, f"{self.ccd}_ABORT_EXPOSURE", ["ABORT"])
        except IndiError:
            pass

    def guide_pulse(self, direction: str, ms: float) -> None:
        _pulse(self.client, self.name, direction, ms)


class GuideCamera(Camera):
    """A separate guide camera (``indi_simulator_guide``); same interface as Camera."""


class GuideHead(Camera):
    """The guide chip of a camera with two sensors (INDI's ``GUIDER_*`` properties and
    the ``CCD2`` BLOB; e.g. the ``CCD Simulator``'s 500 x 290 guide head, or an SBIG's
    tracking CCD). Same interface as Camera; ``guide_pulse`` goes through the
    camera's ST-4 port. It shares the device (and its connection) with the main chip:
    frames of the two chips are told apart by BLOB name, so both may expose at once.
    """

    ccd = "GUIDER"
    _chip = "guide"

    def info(self) -> dict[str, float]:
        # GUIDER_INFO's elements are named CCD_MAX_X... like CCD_INFO's
        i = self.client.number(self.name, "GUIDER_INFO")
        return {k.replace("CCD_", "GUIDER_", 1): v for k, v in i.items()} | i

    def set_gain(self, gain: float) -> None:      # the chips share one gain
        return None

    def set_offset(self, offset: float) -> None:
        return None

    def temperature(self) -> float | None:
        return None

    def min_exposure(self) -> float:
        return 0.0


# -- BLOB routing per chip ----------------------------------------------------------
# IndiClient queues a device's BLOBs together; a camera with a guide head sends the
# main chip's frames as CCD1 and the guide chip's as CCD2. Both chips' exposures read
# the device queue through here, which moves each BLOB to its chip's own queue.
_ROUTES: "weakref.WeakKeyDictionary[IndiClient, dict]" = weakref.WeakKeyDictionary()
_ROUTE_LOCK = threading.Lock()


def _chip_of(blob_name: str) -> str:
    return "guide" if blob_name.upper() == "CCD2" else "main"


def _chip_queue(client: IndiClient, device: str, chip: str) -> "queue.Queue":
    with _ROUTE_LOCK:
        routes = _ROUTES.setdefault(client, {})
        return routes.setdefault((device, chip), queue.Queue())


def _route(client: IndiClient, device: str) -> None:
    """Move every BLOB waiting in the client's queue of ``device`` to its chip's queue."""
    src = client._blobs[device]  # noqa: SLF001 - the client's own per-device queue
    while True:
        try:
            blob = src.get_nowait()
        except queue.Empty:
            return
        _chip_queue(client, device, _chip_of(blob.name)).put(blob)


def _chip_drain(client: IndiClient, device: str, chip: str) -> None:
    _route(client, device)
    q = _chip_queue(client, device, chip)
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _chip_next(client: IndiClient, device: str, chip: str, timeout: float):
    """The next BLOB of ``chip`` from ``device`` (IndiError after ``timeout`` s)."""
    q = _chip_queue(client, device, chip)
    deadline = time.monotonic() + timeout
    while True:
        client._check()  # noqa: SLF001 - ConnectionLost when the server dropped
        _route(client, device)
        try:
            return q.get(timeout=min(0.1, max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() >= deadline:
                raise IndiError(f"{device}: no image arrived within {timeout:.0f} s") from None


def _pulse(client: IndiClient, device: str, direction: str, ms: float) -> None:
    """A guide pulse of ``ms`` milliseconds: direction N, S, E or W."""
    prop, elem = {"N": ("TELESCOPE_TIMED_GUIDE_NS", "TIMED_GUIDE_N"),
                  "S": ("TELESCOPE_TIMED_GUIDE_NS", "TIMED_GUIDE_S"),
                  "E": ("TELESCOPE_TIMED_GUIDE_WE", "TIMED_GUIDE_E"),
                  "W": ("TELESCOPE_TIMED_GUIDE_WE", "TIMED_GUIDE_W")}[direction.upper()]
    other = {"TIMED_GUIDE_N": "TIMED_GUIDE_S", "TIMED_GUIDE_S": "TIMED_GUIDE_N",
             "TIMED_GUIDE_E": "TIMED_GUIDE_W", "TIMED_GUIDE_W": "TIMED_GUIDE_E"}[elem]
    client.set_number(device, prop, {elem: float(ms), other: 0.0})
    time.sleep(ms / 1000.0)
    client.wait_not_busy(device, prop, timeout=ms / 1000.0 + 10)


class Mount(_Device):
    """An equatorial mount (INDI telescope interface). RA in hours, Dec in degrees
    (of date, as INDI's EQUATORIAL_EOD_COORD)."""

    def coordinates(self) -> tuple[float, float]:
        c = self.client.number(self.name, "EQUATORIAL_EOD_COORD")
        return c["RA"], c["DEC"]

    @property
    def parked(self) -> bool:
        return bool(self.client.switch(self.name, "TELESCOPE_PARK").get("PARK"))

    def unpark(self, timeout: float = 120.0) -> None:
        if self.parked:
            self.client.set_switch(self.name, "TELESCOPE_PARK", ["UNPARK"], wait=timeout)

    def park(self, timeout: float = 300.0) -> None:
        self.client.set_switch(self.name, "TELESCOPE_PARK", ["PARK"], wait=timeout)
        deadline = time.monotonic() + timeout
        while not self.parked:
            if time.monotonic() > deadline:
                raise IndiError(f"{self.name} did not park within {timeout:.0f} s")
            time.sleep(0.2)

    def track(self, on: bool = True, timeout: float = 10.0) -> None:
        # INDI keeps TELESCOPE_TRACK_STATE Busy while tracking: wait for the switch itself
        if not self.has("TELESCOPE_TRACK_STATE") or self.tracking == on:
            return
        self.client.set_switch(self.name, "TELESCOPE_TRACK_STATE", ["TRACK_ON" if on else "TRACK_OFF"])
        deadline = time.monotonic() + timeout
        while self.tracking != on:
            if time.monotonic() > deadline:
                raise IndiError(f"{self.name}: tracking did not turn {'on' if on else 'off'}")
            time.sleep(0.1)

    @property
    def tracking(self) -> bool:
        return bool(self.client.switch(self.name, "TELESCOPE_TRACK_STATE").get("TRACK_ON"))

    def _coord(self, ra_h: float, dec: float, mode: str, timeout: float,
               tolerance_deg: float = 0.5) -> None:
        """Send coordinates and wait for the end of the slew.

        Done when the server has answered, the state is not Busy and the reported
        position is within ``tolerance_deg`` of the request: a tracking mount sends
        position updates all the time, so an answer alone may be a periodic update
        sent before the request was read. (The simulator's gotos end ~3' off; plate
        solving corrects that, see centre.py.)
        """
        self.unpark()
        self.client.set_switch(self.name, "ON_COORD_SET", [mode], wait=10)
        since = self.client.updates(self.name, "EQUATORIAL_EOD_COORD")
        self.client.set_number(self.name, "EQUATORIAL_EOD_COORD", {"RA": ra_h % 24.0, "DEC": dec})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise IndiError(f"{self.name}: did not reach RA {ra_h:.4f} h Dec {dec:+.4f} "
                                f"within {timeout:.0f} s")
            self.client.wait_answer(self.name, "EQUATORIAL_EOD_COORD", since, left)
            since = self.client.updates(self.name, "EQUATORIAL_EOD_COORD")
            ra_now, dec_now = self.coordinates()
            d_ra = ((ra_now - ra_h + 12.0) % 24.0 - 12.0) * 15.0 * np.cos(np.radians(dec))
            if np.hypot(d_ra, dec_now - dec) <= tolerance_deg:
                return
            time.sleep(0.1)

    def goto(self, ra_h: float, dec: float, *, timeout: float = 300.0) -> None:
        """Slew to (RA hours, Dec degrees) and track there."""
        self._coord(ra_h, dec, "TRACK", timeout)

    def sync(self, ra_h: float, dec: float) -> None:
        """Tell the mount it points at (RA, Dec) (after a plate solve)."""
        self._coord(ra_h, dec, "SYNC", 30.0)

    def pier_side(self) -> str | None:
        if not self.has("TELESCOPE_PIER_SIDE"):
            return None
        s = self.client.switch(self.name, "TELESCOPE_PIER_SIDE")
        return "W" if s.get("PIER_WEST") else "E" if s.get("PIER_EAST") else None

    def guide_pulse(self, direction: str, ms: float) -> None:
        _pulse(self.client, self.name, direction, ms)

    def site(self) -> tuple[float, float]:
        g = self.client.number(self.name, "GEOGRAPHIC_COORD")
        return g["LAT"], g["LONG"]

    def set_site(self, lat: float, lon: float, elevation: float = 0.0) -> None:
        self.client.set_number(self.name, "GEOGRAPHIC_COORD",
                               {"LAT": lat, "LONG": lon % 360.0, "ELEV": elevation}, wait=10)

    def set_focal_length(self, mm: float, aperture_mm: float | None = None) -> None:
        """The optics the camera's header (and the simulator's star field) use."""
        values = {"TELESCOPE_FOCAL_LENGTH": mm, "GUIDER_FOCAL_LENGTH": mm}
        if aperture_mm:
            values.update(TELESCOPE_APERTURE=aperture_mm, GUIDER_APERTURE=aperture_mm)
        self.client.set_number(self.name, "TELESCOPE_INFO", values, wait=10)


class Focuser(_Device):
    """An absolute focuser (steps)."""

    def position(self) -> int:
        return int(round(self.client.number(self.name, "ABS_FOCUS_POSITION")["FOCUS_ABSOLUTE_POSITION"]))

    def move_to(self, steps: int, *, timeout: float = 120.0) -> None:
        self.client.set_number(self.name, "ABS_FOCUS_POSITION",
                               {"FOCUS_ABSOLUTE_POSITION": int(steps)}, wait=timeout)

    def temperature(self) -> float | None:
        if not self.has("FOCUS_TEMPERATURE"):
            return None
        return next(iter(self.client.number(self.name, "FOCUS_TEMPERATURE").values()))


class FilterWheel(_Device):
    """A filter wheel: slots 1..N with names."""

    def names(self) -> list[str]:
        t = self.client.text(self.name, "FILTER_NAME")
        return [t[k] for k in sorted(t, key=lambda k: int("".join(c for c in k if c.isdigit()) or 0))]

    def slot(self) -> int:
        return int(self.client.number(self.name, "FILTER_SLOT")["FILTER_SLOT_VALUE"])

    def current(self) -> str:
        return self.names()[self.slot() - 1]

    def select(self, filt: "str | int", *, timeout: float = 60.0) -> int:
        """Move to a slot (1-based) or a filter name (case-insensitive); returns the slot."""
        names = self.names()
        if isinstance(filt, str) and not filt.isdigit():
            low = [n.lower() for n in names]
            if filt.lower() not in low:
                raise IndiError(f"{self.name}: no filter {filt!r} (has {', '.join(names)})")
            slot = low.index(filt.lower()) + 1
        else:
            slot = int(filt)
        self.client.set_number(self.name, "FILTER_SLOT", {"FILTER_SLOT_VALUE": slot}, wait=timeout)
        return slot


class LightPanel(_Device):
    """A flat panel (INDI light box interface)."""

    def on(self, intensity: float | None = None) -> None:
        self.client.set_switch(self.name, "FLAT_LIGHT_CONTROL", ["FLAT_LIGHT_ON"], wait=10)
        if intensity is not None and self.has("FLAT_LIGHT_INTENSITY"):
            self.client.set_number(self.name, "FLAT_LIGHT_INTENSITY",
                                   {"FLAT_LIGHT_INTENSITY_VALUE": intensity}, wait=10)

    def off(self) -> None:
        self.client.set_switch(self.name, "FLAT_LIGHT_CONTROL", ["FLAT_LIGHT_OFF"], wait=10)

    @property
    def lit(self) -> bool:
        return bool(self.client.switch(self.name, "FLAT_LIGHT_CONTROL").get("FLAT_LIGHT_ON"))


@dataclasses.dataclass
class Equipment:
    """The devices of one rig (any may be None). Names are INDI device names."""

    client: IndiClient
    camera: Camera | None = None
    mount: Mount | None = None
    focuser: Focuser | None = None
    wheel: FilterWheel | None = None
    panel: LightPanel | None = None
    guider: GuideCamera | GuideHead | None = None

    @classmethod
    def from_names(cls, client: IndiClient, *, camera: str | None = None, mount: str | None = None,
                   focuser: str | None = None, wheel: str | None = None,
                   panel: str | None = None, guider: str | None = None) -> "Equipment":
        # the camera's own name as guider: its guide head (a second chip)
        guide = guider and (GuideHead(client, guider) if guider == camera else GuideCamera(client, guider))
        return cls(client, camera and Camera(client, camera), mount and Mount(client, mount),
                   focuser and Focuser(client, focuser), wheel and FilterWheel(client, wheel),
                   panel and LightPanel(client, panel), guide)

    def devices(self) -> list[_Device]:
        return [d for d in (self.camera, self.mount, self.focuser, self.wheel, self.panel,
                            self.guider) if d is not None]

    def connect(self, timeout: float = 20.0) -> None:
        """Connect every device, then tell the camera which mount/focuser/wheel it has
        (the driver reads their positions into its FITS headers)."""
        for d in self.devices():
            d.connect(timeout)
        cam = self.camera
        if cam is not None and cam.has("ACTIVE_DEVICES"):
            active = {}
            if self.mount:
                active["ACTIVE_TELESCOPE"] = self.mount.name
            if self.focuser:
                active["ACTIVE_FOCUSER"] = self.focuser.name
            if self.wheel:
                active["ACTIVE_FILTER"] = self.wheel.name
            if active:
                self.client.set_text(cam.name, "ACTIVE_DEVICES", active)
        if (self.guider is not None and not isinstance(self.guider, GuideHead)
                and self.guider.has("ACTIVE_DEVICES") and self.mount):
            self.client.set_text(self.guider.name, "ACTIVE_DEVICES",
                                 {"ACTIVE_TELESCOPE": self.mount.name})

    def status(self) -> dict[str, str]:
        """Device name -> "connected" / "disconnected" (for the widget)."""
        return {d.name: "connected" if d.connected else "disconnected" for d in self.devices()}
