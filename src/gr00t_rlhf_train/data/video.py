"""Video helpers (PyAV): a streaming H.264 encoder, a remuxer, a cached frame reader, time -> frame index.

Writing: :class:`VideoEncoder` encodes frame by frame with ``libx264`` into a *fragmented* MP4
(``frag_keyframe+empty_moov``): the file is readable up to the last complete fragment (one GOP)
even if the process is killed, which is what crash recovery relies on. ``tune=zerolatency`` keeps
no frames inside the encoder, so memory stays bounded. A committed episode is then :func:`remux`-ed
(packet copy, no re-encoding) into an ordinary MP4 (``moov`` first, exact frame count and duration),
which is what other loaders (PyAV's ``stream.frames``, Isaac-GR00T, LeRobot) expect.

GOP: every ``gop_frames``-th frame is a keyframe (default :data:`DEFAULT_GOP_FRAMES` = 1, every frame).
Loaders that seek by time land on the keyframe at or before the time; Isaac-GR00T's
``torchvision_av`` backend returns that keyframe itself for a single timestamp, so only GOP 1 gives
it the exact frame (measured cost in docs/datasets.md).

Time base: frame times are stored in ticks of :data:`TIME_BASE` (1/4096 s). The writer quantises
the parquet ``timestamp`` to the same grid (rounding down) with :func:`quantize_times`, so a float32
timestamp and the frame's pts are *equal* numbers: a loader that seeks to the row's timestamp and takes the frame at
(or at/after) it gets exactly that row's frame (with milliseconds, float32 rounding put half of the
rows a hair after their frame's pts).

Reading: :class:`VideoReader` demuxes the packet timestamps once (cheap, no decoding), maps a time
within the episode to the latest frame at or before it, and decodes with a small cache: sequential
access continues the running decoder instead of seeking; random access seeks to the keyframe.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gr00t_rlhf_train.data.errors import DatasetError, DatasetWriteError
from gr00t_rlhf_train.data.meta import fsync_dir

TIME_BASE = Fraction(1, 4096)  # encoder timestamps in 1/4096 s (exact in float32 up to 4096 s)
_TIME_BASE = TIME_BASE
_TIME_TOL = 1e-3  # a frame stamped within 1 ms after t still counts as "at" t
DEFAULT_GOP_FRAMES = 1  # keyframe interval in frames (see the module docstring)


def quantize_times(t: np.ndarray) -> np.ndarray:
    """Seconds -> float32 seconds on the encoder's time grid, rounded DOWN: what the parquet stores.

    Each value is exactly a frame's pts (no float32 rounding left), and never later than the
    time given: a loader that rounds a row's timestamp to the nominal ``k / fps`` and asks for
    the frame shown then (torchcodec's ``get_frames_played_at``) still lands on this frame. The
    1e-6 tick slack keeps a value that float arithmetic left a hair below a grid point on it.
    """
    ticks = TIME_BASE.denominator
    return (np.floor(np.asarray(t, np.float64) * ticks + 1e-6) / ticks).astype(np.float32)


def quantize_time(t: float) -> float:
    """One time through :func:`quantize_times` (the encoder's pts of a frame shown at ``t``)."""
    return float(quantize_times(np.array([t]))[0])


def frame_index_at(frame_times: np.ndarray, t: float) -> int:
    """Index of the latest frame with time <= t (clamped to the first and last frame)."""
    i = int(np.searchsorted(frame_times, t + _TIME_TOL, side="right")) - 1
    return min(max(i, 0), len(frame_times) - 1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf if identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


class VideoEncoder:
    """Encode uint8 RGB frames [H, W, 3] one at a time into an H.264 fragmented MP4.

    Encoding runs on a worker thread (PyAV releases the GIL while encoding), so the caller (a
    ROS callback, a bag reader) goes on while the previous frames are compressed. At most
    ``queue_frames`` frames wait; an error of the worker is raised by the next ``add``/``close``.

    ``low_latency=True`` (live recording): x264 ``zerolatency``, so every frame reaches the file at
    once and a crash loses at most the queued frames. ``False`` (offline conversion): x264 frame
    threads on every core, ~1.6x the throughput, frames leave the encoder a few frames late.
    ``gop_frames``: keyframe interval in frames (1 = every frame a keyframe).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], crf: int = 20,
                 preset: str = "ultrafast", gop_frames: int = DEFAULT_GOP_FRAMES, queue_frames: int = 4,
                 low_latency: bool = True):
        self.path = Path(path)
        self.height, self.width = int(size[0]), int(size[1])
        if self.height % 2 or self.width % 2 or self.height <= 0 or self.width <= 0:
            raise ValueError(f"VideoEncoder.size: {size!r} must be positive and even (yuv420p)")
        check_gop_frames(gop_frames, "VideoEncoder.gop_frames")
        self.frames = 0
        self._last_pts = -1
        # each packet lasts a hair over 1/fps: the last frame's duration (the others are pts
        # differences) keeps the file's average frame rate at or just below fps, so loaders that
        # snap timestamps to multiples of 1/average_fps (GR00T's torchcodec path) land on our frames
        self._frame_period = 1 / Fraction(fps).limit_denominator(1000)
        try:
            self._container = av.open(str(self.path), "w", format="mp4", options={
                "movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"})
            s = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
            s.time_base = _TIME_BASE
            s.codec_context.time_base = _TIME_BASE
            s.codec_context.gop_size = gop_frames
            # keyint_min=1 and no scene-cut keyframes: a keyframe exactly every gop_frames frames
            s.options = {"preset": preset, "crf": str(crf), "keyint_min": "1", "sc_threshold": "0",
                         **({"tune": "zerolatency"} if low_latency else {"x264-params": "sliced-threads=0:threads=0"})}
            self._stream = s
        except OSError as e:
            raise DatasetWriteError(self.path, None, f"cannot create video: {e}", getattr(e, "errno", None)) from e
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_frames))
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name=f"encode {self.path.name}", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure; the caller sees the error
            image, pts = item
            try:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = pts, _TIME_BASE
                self._mux(self._stream.encode(frame))
            except BaseException as e:  # noqa: BLE001 - handed to the caller thread
                self._error = e

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _finish_worker(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    def add(self, image: np.ndarray, t: float) -> None:
        """Encode ``image`` (uint8 [H, W, 3] RGB) shown at ``t`` seconds from the video start."""
        if image.dtype != np.uint8 or image.shape != (self.height, self.width, 3):
            raise ValueError(f"{self.path}: image must be uint8 [{self.height}, {self.width}, 3], "
                             f"got {image.dtype} {list(image.shape)}")
        pts = round(t / _TIME_BASE)
        if pts <= self._last_pts:
            raise ValueError(f"{self.path}: frame time {t:.4f}s is not after the previous frame")
        self._raise_worker_error()
        self._queue.put((np.array(image, copy=True, order="C"), pts))  # a copy: the caller may reuse its buffer
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._container is None:
            return
        self._finish_worker()
        try:
            self._raise_worker_error()
            self._mux(self._stream.encode(None))
            self._container.close()
        except OSError as e:
            raise DatasetWriteError(self.path, None, f"cannot finish video: {e}", getattr(e, "errno", None)) from e
        finally:
            self._container = None

    def abort(self) -> None:
        """Close without caring about errors (the file is about to be deleted)."""
        self._error = Exception("aborted")  # the worker drops what is still queued
        self._finish_worker()
        self._error = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort on an abandoned file
                pass
            self._container = None

    def _mux(self, packets) -> None:
        try:
            for p in packets:
                if p.time_base:
                    p.duration = math.ceil(self._frame_period / p.time_base) + 1
                self._container.mux(p)
        except OSError as e:
            raise DatasetWriteError(self.path, None, f"cannot write video: {e}", getattr(e, "errno", None)) from e


def check_gop_frames(gop_frames, where: str) -> int:
    """``gop_frames`` if it is a positive integer, else ValueError naming ``where``."""
    if not isinstance(gop_frames, int) or isinstance(gop_frames, bool) or gop_frames < 1:
        raise ValueError(f"{where}={gop_frames!r} must be a positive integer (frames between keyframes; 1 = every frame)")
    return gop_frames


def remux(src: str | Path, dst: str | Path, frames: int | None = None) -> int:
    """Copy the first ``frames`` (all if None) video packets of ``src`` into an ordinary MP4 ``dst``.

    No re-encoding. The result has its ``moov`` first (faststart), so PyAV/ffprobe report the
    frame count and duration. Written to a temporary file next to ``dst``, fsync-ed, then renamed
    over ``dst``: ``dst`` is either absent/old or complete. Returns the number of packets copied.
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.remux.tmp")
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise DatasetError(src, "video", "no video stream in the file")
            s = inp.streams.video[0]
            n = 0
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                o = out.add_stream_from_template(s)
                try:
                    for p in inp.demux(s):
                        if not p.size:
                            continue
                        if frames is not None and n >= frames:
                            break
                        p.stream = o
                        out.mux(p)
                        n += 1
                except av.error.FFmpegError:
                    if frames is None:
                        raise
                    # a torn staged file: the frames asked for were counted before it ends
        if frames is not None and n != frames:
            raise DatasetError(src, "video", f"holds {n} complete frames, {frames} were asked for")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except av.error.FFmpegError as e:
        raise DatasetError(src, "video", f"cannot remux to {dst.name} ({e})") from None
    except OSError as e:
        raise DatasetWriteError(dst, None, f"cannot write the remuxed video ({e.strerror or e})", e.errno) from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def probe_frame_times(path: str | Path) -> tuple[np.ndarray, tuple[int, int], str]:
    """(frame times in seconds from the first frame, (height, width), codec name) without decoding."""
    times, size, codec, _, _ = _probe(path)
    return times, size, codec


def _probe(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "video", "video file is missing")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise DatasetError(path, "video", "no video stream in the file")
            s = c.streams.video[0]
            tb = float(s.time_base)
            pts = [p.pts for p in c.demux(s) if p.pts is not None and p.size > 0]
            size, codec = (s.codec_context.height, s.codec_context.width), s.codec_context.name
    except av.error.FFmpegError as e:
        raise DatasetError(path, "video", f"unreadable video ({e})") from None
    if not pts:
        raise DatasetError(path, "video", "the video has no frames")
    pts = np.sort(np.asarray(pts, dtype=np.int64))
    return (pts - pts[0]) * tb, size, codec, int(pts[0]), tb


class VideoReader:
    """Random and sequential access to the frames of one video file by index or time."""

    def __init__(self, path: str | Path, cache_size: int = 16):
        self.path = Path(path)
        self.frame_times, self.size, self.codec, self._pts0, self._tb = _probe(self.path)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._container = None
        self._decoder = None
        self._next = 0  # index of the frame the running decoder yields next
        self.decoded = 0  # frames decoded so far (for tests and benchmarks)

    def __len__(self) -> int:
        return len(self.frame_times)

    def index_at(self, t: float) -> int:
        """Frame index for time ``t`` seconds from the first frame (latest frame at or before)."""
        return frame_index_at(self.frame_times, t)

    def frame_at(self, t: float) -> np.ndarray:
        return self.frame(self.index_at(t))

    def frame(self, i: int) -> np.ndarray:
        """Decoded frame ``i`` as uint8 [H, W, 3] RGB."""
        if not 0 <= i < len(self):
            raise IndexError(f"{self.path}: frame {i} out of range 0..{len(self) - 1}")
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        if self._decoder is None or i < self._next or i > self._next + 2 * self._cache_size:
            self._seek(i)
        while True:
            try:
                frame = next(self._decoder)
            except StopIteration:
                raise DatasetError(self.path, "video", f"frame {i} could not be decoded (stream ends early)") from None
            except av.error.FFmpegError as e:
                raise DatasetError(self.path, "video", f"decoding frame {i} failed ({e})") from None
            j = self._index_of(frame)
            self.decoded += 1
            self._next = j + 1
            if j >= i - 1:  # converting to RGB costs more than decoding: only what is asked for
                self._remember(j, frame.to_ndarray(format="rgb24"))
            if j >= i:
                break
        if i not in self._cache:  # frame i missing in the stream: use the nearest earlier one
            self._remember(i, self._cache[max(k for k in self._cache if k <= j)])
        return self._cache[i]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = self._decoder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # internals
    def _remember(self, j: int, img: np.ndarray) -> None:
        self._cache[j] = img
        self._cache.move_to_end(j)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _index_of(self, frame) -> int:
        t = (frame.pts - self._pts0) * self._tb
        return int(np.searchsorted(self.frame_times, t - _TIME_TOL / 2, side="left"))

    def _seek(self, i: int) -> None:
        try:
            if self._container is None:
                self._container = av.open(str(self.path))
                s = self._container.streams.video[0]
                s.thread_type = "AUTO"
            s = self._container.streams.video[0]
            target = self._pts0 + round(self.frame_times[i] / self._tb)
            self._container.seek(int(target), stream=s, backward=True, any_frame=False)
            self._decoder = self._container.decode(s)
            self._next = 0  # unknown until the first frame comes out
        except av.error.FFmpegError as e:
            raise DatasetError(self.path, "video", f"seeking to frame {i} failed ({e})") from None
