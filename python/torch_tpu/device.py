"""The ``torch.tpu`` device module, named after ``torch.cuda``."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import torch

from torch_tpu import _core

__all__ = [
    "Event",
    "Stream",
    "StreamContext",
    "current_device",
    "current_stream",
    "default_stream",
    "device",
    "device_count",
    "empty_cache",
    "get_amp_supported_dtype",
    "get_device_name",
    "get_device_properties",
    "get_rng_state",
    "get_rng_state_all",
    "init",
    "initial_seed",
    "is_available",
    "is_bf16_supported",
    "is_initialized",
    "manual_seed",
    "manual_seed_all",
    "max_memory_allocated",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "reset_accumulated_memory_stats",
    "reset_peak_memory_stats",
    "seed",
    "seed_all",
    "set_device",
    "set_rng_state",
    "set_rng_state_all",
    "set_stream",
    "stream",
    "synchronize",
]

Device = int | str | torch.device | None

_U64 = 0xFFFF_FFFF_FFFF_FFFF


def _device_index(dev: Device) -> int:
    """The index named by ``dev``; ``None`` and a bare ``"tpu"`` mean the current device."""
    if dev is None:
        return current_device()
    if isinstance(dev, int):
        return dev
    if isinstance(dev, str):
        dev = torch.device(dev)
    if isinstance(dev, torch.device):
        if dev.type != "tpu":
            raise ValueError(f"expected a tpu device, got {dev}")
        return current_device() if dev.index is None else dev.index
    raise TypeError(f"expected an int, str or torch.device, got {type(dev).__name__}")


def _as_seed(seed: int) -> int:
    # Same mapping as torch.manual_seed: negative seeds wrap into uint64 (two's complement).
    seed = int(seed)
    if seed < 0:
        seed += _U64 + 1
    if not 0 <= seed <= _U64:
        raise RuntimeError(f"seed must be within [-0x8000_0000_0000_0000, 0xffff_ffff_ffff_ffff], got {seed}")
    return seed


# --- devices ---------------------------------------------------------------


def is_available() -> bool:
    """True if at least one device is there."""
    try:
        return _core.device_count() > 0
    except RuntimeError:
        return False


def device_count() -> int:
    """The number of devices of the PJRT platform in use."""
    return _core.device_count()


def current_device() -> int:
    """The index of the current device."""
    return _core.current_device()


def set_device(device: Device) -> None:
    """Makes ``device`` the current device."""
    index = _device_index(device)
    if index >= 0:
        _core.set_device(index)


class device:
    """Context manager that makes ``device`` current and restores the previous one."""

    def __init__(self, device: Device) -> None:
        self.idx = -1 if device is None else _device_index(device)
        self.prev_idx = -1

    def __enter__(self) -> device:
        self.prev_idx = current_device()
        if self.idx >= 0 and self.idx != self.prev_idx:
            _core.set_device(self.idx)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.idx >= 0 and self.idx != self.prev_idx:
            _core.set_device(self.prev_idx)


def synchronize(device: Device = None) -> None:
    """Runs all pending work and waits for the device to finish it."""
    _core.sync(True)


def get_device_name(device: Device = None) -> str:
    """The name of a device, as the PJRT plugin reports it."""
    return _core.device_name(_device_index(device))


@dataclass(frozen=True)
class TpuDeviceProperties:
    name: str
    platform: str
    index: int
    total_memory: int | None = None  # bytes; None where the plugin does not say

    @property
    def type(self) -> str:
        return "tpu"


def get_device_properties(device: Device = None) -> TpuDeviceProperties:
    """Name, PJRT platform, index and memory of a device."""
    index = _device_index(device)
    try:
        total: int | None = _core.mem_get_info(index)[1]
    except RuntimeError:
        total = None
    name = _core.device_name(index)
    return TpuDeviceProperties(name=name, platform=_core.platform(), index=index, total_memory=total)


def is_initialized() -> bool:
    """True once the runtime has started (``import torch_tpu`` starts it)."""
    return _core.is_initialized()


def init() -> None:
    """Starts the runtime if it is not running yet (thread-safe; import already does it)."""
    _core.init()


def _lazy_init() -> None:
    _core.init()


def _is_in_bad_fork() -> bool:
    """True in a child process forked after the runtime started: it cannot use the device."""
    return _core.in_bad_fork()


def is_bf16_supported(including_emulation: bool = True) -> bool:
    return True


def get_amp_supported_dtype() -> list[torch.dtype]:
    """The dtypes ``torch.autocast("tpu", dtype=...)`` accepts."""
    return [torch.bfloat16, torch.float16]


# --- random numbers ----------------------------------------------------------


def manual_seed(seed: int) -> None:
    """Seeds the current device's default generator."""
    _core.manual_seed(current_device(), _as_seed(seed))


def manual_seed_all(seed: int) -> None:
    """Seeds every device's default generator (``torch.manual_seed`` calls this)."""
    s = _as_seed(seed)
    for i in range(device_count()):
        _core.manual_seed(i, s)


def seed() -> int:
    """Seeds the current device with a random number and returns it."""
    s = random.getrandbits(63)
    manual_seed(s)
    return s


def seed_all() -> int:
    """Seeds every device with one random number and returns it."""
    s = random.getrandbits(63)
    manual_seed_all(s)
    return s


def initial_seed() -> int:
    """The seed the current device's default generator was last seeded with."""
    return _core.initial_seed(current_device())


def get_rng_state(device: Device = "tpu") -> torch.Tensor:
    """The generator state of a device, as a CPU ``uint8`` tensor."""
    state = _core.get_rng_state(_device_index(device))
    return torch.frombuffer(bytearray(state), dtype=torch.uint8).clone()


def set_rng_state(new_state: torch.Tensor, device: Device = "tpu") -> None:
    """Restores a state from :func:`get_rng_state`."""
    data = new_state.detach().to("cpu", torch.uint8).contiguous().flatten()
    _core.set_rng_state(_device_index(device), bytes(data.tolist()))


def get_rng_state_all() -> list[torch.Tensor]:
    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states: list[torch.Tensor]) -> None:
    for i, state in enumerate(new_states):
        set_rng_state(state, i)


# --- memory -------------------------------------------------------------------


def memory_allocated(device: Device = None) -> int:
    """Bytes held by live tensors' storages on a device."""
    return _core.memory_allocated(_device_index(device))


def max_memory_allocated(device: Device = None) -> int:
    """The peak of :func:`memory_allocated` since start or the last reset."""
    return _core.max_memory_allocated(_device_index(device))


def reset_peak_memory_stats(device: Device = None) -> None:
    """Restarts the ``peak`` statistics from the current values."""
    _core.reset_peak_memory_stats(_device_index(device))


def reset_accumulated_memory_stats(device: Device = None) -> None:
    """Restarts the ``allocated``/``freed`` totals of :func:`memory_stats` from zero."""
    _core.reset_accumulated_memory_stats(_device_index(device))


def memory_stats(device: Device = None) -> dict[str, Any]:
    """A device's memory counters under ``torch.cuda.memory_stats``'s names
    (``allocated_bytes.all.current``, ``allocation.all.peak``...); there is no
    caching allocator, so reserved and active memory are the allocated memory.
    ``torch.accelerator.memory_stats`` reports the same numbers."""
    return dict(_core.memory_stats(_device_index(device)))


def mem_get_info(device: Device = None) -> tuple[int, int]:
    """(free, total) bytes of a device, as ``torch.cuda.mem_get_info``: the
    plugin's own count (GPU, TPU); for the CPU plugin, whose buffers are host
    memory, the host's available and total memory."""
    return _core.mem_get_info(_device_index(device))


def memory_reserved(device: Device = None) -> int:
    """Same as :func:`memory_allocated`: the runtime keeps no cache of freed buffers."""
    return memory_allocated(device)


def max_memory_reserved(device: Device = None) -> int:
    """Same as :func:`max_memory_allocated`."""
    return max_memory_allocated(device)


def empty_cache() -> None:
    """Releases cached memory no tensor uses: there is none. The runtime keeps
    no pool of freed buffers (each goes back to the plugin when its storage is
    freed), and compiled programs stay cached, as CUDA's kernels do under
    ``torch.cuda.empty_cache()``; :func:`torch_tpu.clear_executable_cache`
    drops those."""


# --- streams and events ----------------------------------------------------------
#
# Honest semantics for a PJRT device: each device has one in-order queue, so all
# streams of a device are that queue. Waiting between streams is free (order is
# already guaranteed); synchronizing a stream or an event runs the pending work
# and waits for the device.


class Stream(torch.Stream):
    """A stream of a tpu device (every stream of a device is its one in-order queue)."""

    def __new__(cls, device: Device = None, priority: int = 0, **kwargs: Any) -> Stream:
        index = _device_index(device)
        return super().__new__(cls, device=torch.device("tpu", index), priority=priority)

    def wait_event(self, event: Event) -> None:
        """Work issued to this stream after this call runs after ``event``'s work: true by queue order."""

    def wait_stream(self, stream: torch.Stream) -> None:
        """Work issued after this call runs after ``stream``'s work so far: true by queue order."""

    def record_event(self, event: Event | None = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def query(self) -> bool:
        """True when the work issued so far has finished (runs pending fused work first)."""
        synchronize()
        return True

    def synchronize(self) -> None:
        synchronize()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, torch.Stream) and other.device == self.device

    def __hash__(self) -> int:
        return hash(self.device)


class Event:
    """Marks the work issued before :meth:`record`. Timing events take their time
    stamp when the device has finished that work (measured by waiting for it)."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:
        self.enable_timing = enable_timing
        self._recorded = False
        self._time: float | None = None

    def record(self, stream: torch.Stream | None = None) -> None:
        self._recorded = True
        if self.enable_timing:
            synchronize()
            self._time = time.perf_counter()
        else:
            _core.cut("sync")

    def wait(self, stream: torch.Stream | None = None) -> None:
        """Later work on ``stream`` runs after this event's work: true by queue order."""

    def query(self) -> bool:
        if self._recorded:
            synchronize()
        return True

    def synchronize(self) -> None:
        if self._recorded:
            synchronize()

    def elapsed_time(self, end_event: Event) -> float:
        """Milliseconds between this event and ``end_event`` (both recorded with ``enable_timing=True``)."""
        if self._time is None or end_event._time is None:
            raise RuntimeError("elapsed_time needs two events recorded with enable_timing=True")
        return (end_event._time - self._time) * 1000.0


_current_streams: dict[int, Stream] = {}


def current_stream(device: Device = None) -> Stream:
    """The current stream of a device (its default stream)."""
    index = _device_index(device)
    if index not in _current_streams:
        _current_streams[index] = Stream(index)
    return _current_streams[index]


def default_stream(device: Device = None) -> Stream:
    return current_stream(device)


def set_stream(stream: torch.Stream) -> None:
    """Nothing to switch: every stream of a device is the same queue."""


class StreamContext:
    """``with torch.tpu.stream(s):`` runs the block "on" ``s`` (the device's one queue)."""

    def __init__(self, stream: torch.Stream | None) -> None:
        self.stream = stream

    def __enter__(self) -> torch.Stream | None:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        pass


def stream(stream: torch.Stream | None) -> StreamContext:
    return StreamContext(stream)
