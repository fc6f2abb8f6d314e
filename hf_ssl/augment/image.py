"""Batched weak and strong augmentation of normalised ``pixel_values`` for consistency regularization (FixMatch).

Weak view: random horizontal flip + reflect-pad-and-crop. Strong view: the weak view, then RandAugment
(``randaugment_n`` distinct operations drawn per image at magnitude ``randaugment_m`` of 30), then cutout (one gray
square per image). Everything runs on whole (n, 3, H, W) batches on the tensor's device (kornia for equalize and
grayscale, ``F.grid_sample`` for the warps) with random numbers from the global torch RNG, so ``torch.manual_seed``
or a Trainer checkpoint's RNG states reproduce the views. Colour operations see [0, 1] images: the strong view
denormalises with ``mean``/``std``, augments, clamps and renormalises. ``kornia.augmentation.auto.RandAugment`` is
not used: it draws one set of operations for the whole batch rather than per image, and needs n >= 1, 0 < m < 30.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import kornia
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("hf_ssl's image augmentations need kornia: pip install 'hf-ssl[vision]' (or kornia).") from error
import torch
import torch.nn.functional as F

from hf_ssl.data.images import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["RANDAUGMENT_OPS", "ImageAugmenter"]

_COLOUR_OPS = ("autocontrast", "equalize", "brightness", "color", "contrast", "sharpness", "posterize", "solarize")
_GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
RANDAUGMENT_OPS = _COLOUR_OPS + _GEOMETRIC_OPS
"""The RandAugment operations, drawn uniformly (each at most once per image). At magnitude m, with v = m / 30 and a
random sign s per image: brightness, color, contrast and sharpness blend with factor 1 + 0.9 s v (as PIL's
ImageEnhance), posterize keeps 8 - int(4 v) bits, solarize inverts values above 1 - v, rotate turns by 30 s v
degrees, shear_x/shear_y shear by 0.3 s v, translate_x/translate_y shift by 0.3 s v of the side (nearest sampling,
gray fill); autocontrast and equalize have no magnitude."""
_GRAY = 0.5


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-(size - 1), 2 * size - 2] into [0, size) as ``F.pad(mode="reflect")`` does."""
    return (size - 1) - ((size - 1) - index.abs()).abs()


def _colour_op(name: str, x: torch.Tensor, level: float, sign: torch.Tensor) -> torch.Tensor:
    """Apply one colour operation to [0, 1] images; ``level`` in [0, 1], ``sign`` is +-1 per image."""
    if name == "autocontrast":
        low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        spread = high > low  # a constant channel is left alone
        return (x - low * spread) / torch.where(spread, high - low, 1.0)
    if name == "equalize":
        return kornia.enhance.equalize(x)
    if name == "posterize":
        step = 2 ** int(4 * level)  # keep 8 - int(4 v) bits of each 8-bit value, as kornia.enhance.posterize
        return x.mul(255 / step).floor_().mul_(step / 255) if step > 1 else x
    if name == "solarize":
        return torch.lerp(x, 1.0 - x, (x > 1.0 - level).to(x.dtype))
    if name == "sharpness" and min(x.shape[-2:]) < 3:
        return x  # PIL's smoothing needs an interior
    # PIL's ImageEnhance: blend with a degenerate image, degenerate + factor * (x - degenerate), clamped.
    factor = (sign * (0.9 * level) + 1.0).view(-1, 1, 1, 1)
    if name == "brightness":
        return (x * factor).clamp_(0.0, 1.0)
    if name == "color":
        degenerate = kornia.color.rgb_to_grayscale(x)
    elif name == "contrast":
        degenerate = kornia.color.rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    elif name == "sharpness":  # PIL's smoothing kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, not on the border
        rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
        degenerate = x.clone()
        degenerate[..., 1:-1, 1:-1] = (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:] + 4 * x[..., 1:-1, 1:-1]) / 13
    else:
        raise ValueError(f"Unknown colour operation {name!r}")
    return (degenerate + factor * (x - degenerate)).clamp_(0.0, 1.0)


def _affine_theta(kind: torch.Tensor, level: float, sign: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(b, 2, 3) ``F.affine_grid`` matrices (output to source, about the centre); ``kind`` indexes `_GEOMETRIC_OPS`."""
    value = level * sign
    angle = torch.deg2rad(30.0 * value) * (kind == 0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    shear_x, shear_y = 0.3 * value * (kind == 1), 0.3 * value * (kind == 2)
    shift_x, shift_y = 0.6 * value * (kind == 3), 0.6 * value * (kind == 4)  # 0.3 v of the side = 0.6 v in [-1, 1]
    # A rotation, or a shear (the angle is 0 then), or the identity with a shift, in pixel units rescaled to the
    # normalised coordinates of F.affine_grid (x spans width / 2 pixels per unit, y height / 2).
    return torch.stack([cos, (shear_x - sin) * (height / width), shift_x,
                        (sin + shear_y) * (width / height), cos, shift_y], 1).view(-1, 2, 3)


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (b, c, height, width), align_corners=False)``, computed by broadcasting."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta[:, :, :, None, None]  # (b, 2, 3, 1, 1)
    grid = t[:, :, 0] * xs + t[:, :, 1] * ys[:, None] + t[:, :, 2]  # (b, 2, height, width)
    return grid.permute(0, 2, 3, 1)


class ImageAugmenter:
    """Weak (flip + pad-and-crop) and strong (weak + RandAugment + cutout) views of normalised image batches.

    Parameters:
        mean (`Sequence[float]`, *optional*, defaults to `IMAGENET_MEAN`):
            The per-channel mean the pixel values were normalised with (3 finite values).
        std (`Sequence[float]`, *optional*, defaults to `IMAGENET_STD`):
            The per-channel standard deviation (3 positive values).
        flip (`bool`, *optional*, defaults to `True`):
            Whether the weak view flips each image horizontally with probability 0.5.
        crop_padding (`float`, *optional*, defaults to `0.125`):
            Reflect-pad each side by ``round(crop_padding * side)`` pixels and crop back at a random place, in
            [0, 0.5]; 0 disables the crop.
        randaugment_n (`int`, *optional*, defaults to `2`):
            RandAugment operations per image, in [0, len(RANDAUGMENT_OPS)]; 0 disables RandAugment.
        randaugment_m (`int`, *optional*, defaults to `10`):
            Magnitude of the operations, in [0, 30].
        cutout (`float`, *optional*, defaults to `0.5`):
            Side of the gray cutout square as a fraction of the shorter image side, in [0, 1]; 0 disables it.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *,
                 flip: bool = True, crop_padding: float = 0.125, randaugment_n: int = 2, randaugment_m: int = 10,
                 cutout: float = 0.5) -> None:
        stats: dict[str, list[float]] = {"mean": [], "std": []}
        for name, values in (("mean", mean), ("std", std)):
            try:
                stats[name] = [float(v) for v in values]
            except (TypeError, ValueError):
                pass
            if len(stats[name]) != 3 or not all(math.isfinite(v) for v in stats[name]):
                raise ValueError(f"{name} must have 3 finite values, one per RGB channel, got {values!r}; "
                                 f"pass e.g. {name}=IMAGENET_{name.upper()} from hf_ssl.data.images")
        if min(stats["std"]) <= 0:
            raise ValueError(f"std must be > 0 for every channel, got {stats['std']}; pass the standard deviations "
                             "the pixel values were normalised with")
        if not 0.0 <= crop_padding <= 0.5:
            raise ValueError(f"crop_padding must be in [0, 0.5] (a fraction of the side), got {crop_padding}; "
                             "use 0 to disable the crop")
        if not 0.0 <= cutout <= 1.0:
            raise ValueError(f"cutout must be in [0, 1] (a fraction of the side), got {cutout}; use 0 to disable it")
        if int(randaugment_n) != randaugment_n or not 0 <= randaugment_n <= len(RANDAUGMENT_OPS):
            raise ValueError(f"randaugment_n must be an integer in [0, {len(RANDAUGMENT_OPS)}] (the number of "
                             f"operations), got {randaugment_n}; use 0 to disable RandAugment")
        if not 0 <= randaugment_m <= 30:
            raise ValueError(f"randaugment_m must be in [0, 30] (the magnitude), got {randaugment_m}")
        self.mean = torch.tensor(stats["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(stats["std"]).view(1, 3, 1, 1)
        self.flip, self.crop_padding, self.cutout = bool(flip), float(crop_padding), float(cutout)
        self.randaugment_n, self.randaugment_m = int(randaugment_n), randaugment_m

    @staticmethod
    def _check(x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor of shape (n, 3, H, W), got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            got = f"{x.shape[1]} channels" if x.dim() == 4 else f"a {x.dim()}-D tensor"
            single = " (or add the batch dimension of one image with x.unsqueeze(0))" if x.dim() == 3 else ""
            raise ValueError(f"pixel_values must be (n, 3, H, W) with 3 RGB channels, got {got} of shape "
                             f"{tuple(x.shape)}; convert grayscale uint8 images with hf_ssl.data.images."
                             f"to_pixel_values or repeat a single channel with x.repeat(1, 3, 1, 1){single}")
        if not x.is_floating_point():
            raise ValueError(f"pixel_values must be a floating-point tensor of normalised values, got {x.dtype}")
        return x

    def weak_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Weak view of normalised images: random horizontal flip and reflect-pad-and-crop (values unchanged).

        Args:
            x: (n, 3, H, W) normalised pixel values; not modified.
        """
        x = self._check(x)
        n, _, height, width = x.shape
        flipped = torch.rand(n, device=x.device) < 0.5 if self.flip else None
        pad_h, pad_w = round(self.crop_padding * height), round(self.crop_padding * width)
        if flipped is None and pad_h == pad_w == 0:
            return x.clone()
        # One gather from the input: each output pixel reads the source pixel the reflect-padded crop maps it to.
        top = torch.randint(0, 2 * pad_h + 1, (n, 1), device=x.device) - pad_h
        left = torch.randint(0, 2 * pad_w + 1, (n, 1), device=x.device) - pad_w
        rows = _reflect(top + torch.arange(height, device=x.device), height)
        cols = _reflect(left + torch.arange(width, device=x.device), width)
        if flipped is not None:
            cols = torch.where(flipped[:, None], width - 1 - cols, cols)
        index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, height * width)
        return x.flatten(2).gather(2, index.expand(n, 3, height * width)).view(n, 3, height, width)

    def _randaugment(self, x: torch.Tensor) -> torch.Tensor:
        """RandAugment on [0, 1] images, in place: ``randaugment_n`` distinct operations per image, in random order.

        At each of the n steps every operation runs once on the images that drew it (the geometric ones together,
        as one warp), gathered with ``index_select`` and written back with ``index_copy_``.
        """
        n, _, height, width = x.shape
        level, n_colour = self.randaugment_m / 30.0, len(_COLOUR_OPS)
        choice = torch.rand(n, len(RANDAUGMENT_OPS), device=x.device).argsort(dim=1)[:, :self.randaugment_n]
        sign = torch.where(torch.rand(n, self.randaugment_n, device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)
        for slot in range(self.randaugment_n):
            op, images = choice[:, slot].sort(stable=True)  # the images that drew each operation are contiguous
            counts = torch.bincount(op, minlength=len(RANDAUGMENT_OPS)).tolist()
            starts = [sum(counts[:k]) for k in range(n_colour + 1)]
            for k in range(n_colour):
                rows = images[starts[k]:starts[k + 1]]
                if len(rows):
                    x.index_copy_(0, rows, _colour_op(RANDAUGMENT_OPS[k], x.index_select(0, rows), level,
                                                      sign[rows, slot]))
            rows = images[starts[-1]:]
            if len(rows):
                theta = _affine_theta(op[starts[-1]:] - n_colour, level, sign[rows, slot], height, width)
                # Nearest sampling, as PIL's default in FixMatch; warping the offset from gray with zero padding
                # fills the uncovered area with gray.
                warped = F.grid_sample(x.index_select(0, rows).sub_(_GRAY), _affine_grid(theta, height, width),
                                       mode="nearest", padding_mode="zeros", align_corners=False)
                x.index_copy_(0, rows, warped.add_(_GRAY).clamp_(0.0, 1.0))
        return x

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        """Fill, in place, one gray square of side ``round(cutout * min(H, W))`` per image, at a random place inside."""
        n, _, height, width = x.shape
        side = round(self.cutout * min(height, width))
        if side == 0:
            return x
        top = torch.randint(0, height - side + 1, (n, 1), device=x.device)
        left = torch.randint(0, width - side + 1, (n, 1), device=x.device)
        rows, cols = torch.arange(height, device=x.device) - top, torch.arange(width, device=x.device) - left
        in_rows, in_cols = (((i >= 0) & (i < side)).to(x.dtype) for i in (rows, cols))
        inside = in_rows[:, None, :, None] * in_cols[:, None, None, :]  # (n, 1, H, W), 1 inside the square
        return x.lerp_(torch.tensor(_GRAY, dtype=x.dtype, device=x.device), inside)  # exactly gray where inside

    def strong_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Strong view of normalised images: the weak view, RandAugment and cutout, renormalised.

        Args:
            x: (n, 3, H, W) normalised pixel values; not modified.
        """
        x = self.weak_tensor(x)
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        mean, std = self.mean.to(work.device, work.dtype), self.std.to(work.device, work.dtype)
        images = (work * std).add_(mean).clamp_(0.0, 1.0)  # a new tensor: the ops below write into it
        if self.randaugment_n:
            images = self._randaugment(images)
        images = self._cutout(images)  # every operation keeps [0, 1]
        return images.sub_(mean).div_(std).to(x.dtype)

    @staticmethod
    def _replace(batch: Mapping[str, Any], fn: Any) -> dict[str, Any]:
        if "pixel_values" not in batch:
            raise ValueError(f"The batch has no pixel_values key (keys: {sorted(batch)})")
        out = dict(batch)
        out["pixel_values"] = fn(batch["pixel_values"])
        return out

    def weak(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A new batch dict whose ``pixel_values`` are the weak view; other keys are passed through.

        Args:
            batch: a dict with ``pixel_values`` of shape (n, 3, H, W); not modified.
        """
        return self._replace(batch, self.weak_tensor)

    def strong(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A new batch dict whose ``pixel_values`` are the strong view; other keys are passed through.

        Args:
            batch: a dict with ``pixel_values`` of shape (n, 3, H, W); not modified.
        """
        return self._replace(batch, self.strong_tensor)
