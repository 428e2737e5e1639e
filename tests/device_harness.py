"""A second device on a CPU-only machine, for tests: code that would mix host and GPU tensors fails here as it
would on CUDA.

``VirtualDevice`` is a ``TorchFunctionMode``. ``VirtualDevice.DEVICE`` (``cpu:1``) plays the GPU: a tensor moved
or created there has its storage tagged, reports ``cpu:1`` as its ``.device``, and every tensor computed from it
is tagged too; ``.to("cpu")`` / ``.cpu()`` gives an untagged copy (the host). An operation that meets tagged and
untagged non-empty tensors of one or more dimensions raises ``DeviceMixError``, with the exceptions CUDA makes: zero-dim
tensors (scalars) mix freely, ``copy_`` and slice assignment copy across devices, and a device tensor may be
indexed with host indices. ``numpy()`` of a device tensor raises, as it does for a CUDA tensor.

Tagging is by storage address, so views share their base's tag and a ``Module.to`` that swaps a Parameter's
``.data`` moves the Parameter; a tag holds a weak reference to its storage and ends with it, so a freed address
reused by a host tensor is not mistaken for the device. ``peak_bytes`` is the most device storage alive at once
(what the code holds on a GPU, as far as operations this mode sees create it).
"""

from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

_TB = torch._C.TensorBase
# attribute access and metadata queries compare no data across devices
_METADATA = {"__get__", "__set__", "_has_compatible_shallow_copy_type", "is_same_size"}


class DeviceMixError(RuntimeError):
    pass


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)


class VirtualDevice(TorchFunctionMode):
    DEVICE = torch.device("cpu", 1)

    def __init__(self):
        super().__init__()
        self._tagged: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak_bytes = 0
        self._depth = 0
        self.moves = 0  # tensors moved host -> device (a test can check the device was used at all)

    # -- tags -----------------------------------------------------------------------------------------------
    @staticmethod
    def _key(t: torch.Tensor) -> int | None:
        if t.device.type != "cpu" or t.untyped_storage().nbytes() == 0:
            return None  # meta tensors and empty storages carry no data to place
        return t.untyped_storage().data_ptr()

    def on_device(self, t: torch.Tensor) -> bool:
        key = self._key(t)
        entry = self._tagged.get(key) if key is not None else None
        if entry is not None and entry[0].expired():
            del self._tagged[key]  # freed: the address now belongs to whoever allocated it next
            return False
        return entry is not None

    def _tag(self, t: torch.Tensor) -> None:
        key = self._key(t)
        if key is not None:
            storage = t.untyped_storage()
            self._tagged[key] = (StorageWeakRef(storage), storage.nbytes())

    def live_bytes(self) -> int:
        """Bytes of device storage alive now."""
        for key in [k for k, (ref, _) in self._tagged.items() if ref.expired()]:
            del self._tagged[key]
        return sum(n for _, n in self._tagged.values())

    def _is_device(self, device) -> bool | None:
        """True for the virtual device, False for the host, None for anything else (no device given)."""
        if not isinstance(device, (torch.device, str)):
            return None
        device = torch.device(device)
        return device.type == "cpu" and device.index == self.DEVICE.index

    # -- dispatch -------------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        owner = getattr(func, "__self__", None)
        if owner is _TB.device and args and self.on_device(args[0]):
            return self.DEVICE
        if owner is _TB.grad:
            grad = func(*args, **kwargs)
            if grad is not None and self.on_device(args[0]):
                self._tag(grad)  # autograd fills .grad outside this mode, on the parameter's device
            return grad
        if getattr(func, "__name__", "") in _METADATA:
            return func(*args, **kwargs)
        if func is torch.Tensor.register_hook:
            return func(args[0], self._in_mode(args[1], self.on_device(args[0])))
        if func in (_TB.to, torch.Tensor.to):
            return self._move(func, args, kwargs)
        if func in (_TB.cpu, torch.Tensor.cpu):
            return self._move_to(func(*args, **kwargs), args[0], False)
        if func in (_TB.numpy, torch.Tensor.numpy) and self.on_device(args[0]):
            raise DeviceMixError("numpy() of a tensor on the device (a CUDA tensor must be moved to the host first)")

        target = kwargs.get("device")
        if target is not None:
            kwargs = {**kwargs, "device": torch.device("cpu") if self._is_device(target) else target}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        self._check(func, args, tensors)
        out = func(*args, **kwargs)
        if target is not None:
            placed = self._is_device(target)
        else:
            wide = [self.on_device(t) for t in tensors if t.dim() > 0]
            placed = any(wide) if wide else any(self.on_device(t) for t in tensors)
        if placed:
            inputs = {id(t) for t in tensors}  # an in-place result stays where its tensor is
            tree_map(lambda t: self._tag(t) if isinstance(t, torch.Tensor) and id(t) not in inputs else None, out)
            self.peak_bytes = max(self.peak_bytes, self.live_bytes())
        return out

    def _check(self, func, args, tensors) -> None:
        if func in (_TB.copy_, torch.Tensor.copy_):
            return
        if func in (_TB.__getitem__, torch.Tensor.__getitem__, _TB.__setitem__, torch.Tensor.__setitem__):
            # host indices into a device tensor are allowed; device indices into a host tensor are not
            if not self.on_device(args[0]):
                index = [t for t in tree_flatten(args[1])[0] if isinstance(t, torch.Tensor) and t.dim() > 0]
                if any(self.on_device(t) for t in index):
                    raise DeviceMixError(f"{_name(func)}: a host tensor indexed with device indices")
            return
        # an empty tensor has no storage to tag, so its place is unknown here
        wide = [t for t in tensors if t.dim() > 0 and t.numel() > 0]
        placed = {self.on_device(t) for t in wide}
        if len(placed) > 1:
            shapes = ", ".join(f"{tuple(t.shape)}@{'device' if self.on_device(t) else 'host'}" for t in wide)
            raise DeviceMixError(f"{_name(func)} mixes tensors on the device and on the host: {shapes}")

    def _in_mode(self, hook, placed: bool):
        """Autograd calls tensor hooks outside this mode, with gradients made by its engine: the gradient is on
        its tensor's device, and the hook's own operations are checked."""

        def run(grad):
            if placed:
                self._tag(grad)
            with self:
                return hook(grad)

        return run

    def _move(self, func, args, kwargs):
        src = args[0]
        other = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else kwargs.get("other")
        if isinstance(other, torch.Tensor):  # .to(tensor): its device and dtype
            target = self.on_device(other)
        else:
            devices = [a for a in args[1:] if isinstance(a, (torch.device, str))] + [kwargs.get("device")]
            target = self._is_device(devices[0])
            host = torch.device("cpu")
            args = (src, *(host if self._is_device(a) else a for a in args[1:]))
            kwargs = {k: host if k == "device" and self._is_device(v) else v for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        return self._move_to(out, src, self.on_device(src) if target is None else target)

    def _move_to(self, out, src, target: bool):
        if target == self.on_device(src):
            if target:
                self._tag(out)  # a dtype change on the device stays there
            return out
        if self._key(out) == self._key(src):
            out = out.clone()  # a real move makes a new tensor; the source stays where it was
        if target:
            self.moves += 1
            self._tag(out)
            self.peak_bytes = max(self.peak_bytes, self.live_bytes())
        return out

    def __enter__(self):
        self._depth += 1
        return super().__enter__()

    def __exit__(self, *exc):
        self._depth -= 1
        if not self._depth:  # hooks re-enter the mode; the tags live until the outermost exit
            self._tagged.clear()
        return super().__exit__(*exc)
