"""EfficientNet-Lite as a transformers model: config, backbone and image-classification head.

EfficientNet-Lite (Tan & Le, 2019; the TensorFlow ``efficientnet/lite`` builder) is EfficientNet without
squeeze-and-excitation, with ReLU6 activations and an unscaled stem (32 channels) and head (1280 channels), built
for quantised mobile inference. transformers has no class for it (its ``EfficientNetModel`` always adds
squeeze-and-excitation and swish), so hf_ssl defines one and registers it with ``AutoConfig``, ``AutoModel`` and
``AutoModelForImageClassification`` when ``hf_ssl`` is imported: a saved folder then loads with
``AutoModelForImageClassification.from_pretrained(path)``.

Convolutions pad like TensorFlow's ``"SAME"`` (computed from the input size, uneven on stride 2), so the
ImageNet weights give the outputs they were trained to give at any input size. The backbone returns the head's
(batch, 1280, H/32, W/32) feature map as ``last_hidden_state`` and its spatial mean as ``pooler_output``: there is
no class token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention

__all__ = [
    "MODEL_TYPE", "EfficientNetLiteConfig", "EfficientNetLiteModel", "EfficientNetLiteForImageClassification",
    "EfficientNetLitePreTrainedModel",
]

MODEL_TYPE = "hf_ssl_efficientnet_lite"


class EfficientNetLiteConfig(PretrainedConfig):
    """Configuration of an EfficientNet-Lite; the defaults are EfficientNet-Lite2 (width 1.1, depth 1.2, 260 px).

    Stage widths and repeats are the scaled values themselves (no width/depth coefficients to apply).

    Parameters:
        num_channels (`int`, *optional*, defaults to `3`): input channels.
        stem_channels (`int`, *optional*, defaults to `32`): output channels of the stride-2 3x3 stem.
        stage_channels (`list[int]`, *optional*): output channels of each stage's blocks.
        stage_repeats (`list[int]`, *optional*): blocks per stage.
        kernel_sizes (`list[int]`, *optional*): depthwise kernel size of each stage.
        strides (`list[int]`, *optional*): stride of each stage's first block.
        expand_ratios (`list[int]`, *optional*): inverted-bottleneck expansion of each stage.
        hidden_size (`int`, *optional*, defaults to `1280`): channels of the 1x1 head, the pooled feature size.
        batch_norm_eps (`float`, *optional*, defaults to `1e-3`): batch-norm epsilon.
        batch_norm_momentum (`float`, *optional*, defaults to `0.01`): batch-norm momentum (PyTorch's convention).
        dropout_rate (`float`, *optional*, defaults to `0.3`): dropout before the classifier.
        drop_connect_rate (`float`, *optional*, defaults to `0.2`): stochastic-depth rate of the last block (block i
            of n drops its residual branch with probability ``drop_connect_rate * i / n`` in training).
        initializer_range (`float`, *optional*, defaults to `0.02`): std of the classifier's initial weights.
        image_size (`int`, *optional*, defaults to `260`): the native input side (informational).
    """

    model_type = MODEL_TYPE

    def __init__(self, num_channels: int = 3, stem_channels: int = 32,
                 stage_channels: list[int] | tuple[int, ...] = (16, 24, 48, 88, 120, 208, 352),
                 stage_repeats: list[int] | tuple[int, ...] = (1, 3, 3, 4, 4, 5, 1),
                 kernel_sizes: list[int] | tuple[int, ...] = (3, 3, 5, 3, 5, 5, 3),
                 strides: list[int] | tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1),
                 expand_ratios: list[int] | tuple[int, ...] = (1, 6, 6, 6, 6, 6, 6), hidden_size: int = 1280,
                 batch_norm_eps: float = 1e-3, batch_norm_momentum: float = 0.01, dropout_rate: float = 0.3,
                 drop_connect_rate: float = 0.2, initializer_range: float = 0.02, image_size: int = 260,
                 **kwargs) -> None:
        stages = [list(stage_channels), list(stage_repeats), list(kernel_sizes), list(strides), list(expand_ratios)]
        if len({len(s) for s in stages}) != 1 or not stages[0]:
            raise ValueError("stage_channels, stage_repeats, kernel_sizes, strides and expand_ratios need one "
                             f"value per stage, got lengths {[len(s) for s in stages]}")
        self.num_channels, self.stem_channels, self.hidden_size = num_channels, stem_channels, hidden_size
        self.stage_channels, self.stage_repeats, self.kernel_sizes, self.strides, self.expand_ratios = stages
        self.batch_norm_eps, self.batch_norm_momentum = batch_norm_eps, batch_norm_momentum
        self.dropout_rate, self.drop_connect_rate = dropout_rate, drop_connect_rate
        self.initializer_range, self.image_size = initializer_range, image_size
        self.num_hidden_layers = sum(self.stage_repeats)
        super().__init__(**kwargs)


class SamePadConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` padded like TensorFlow's ``"SAME"``: output side ``ceil(input / stride)``, the odd
    pixel of padding at the bottom/right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class ConvNorm(nn.Module):
    """``SamePadConv2d`` → ``BatchNorm2d`` → optional ReLU6."""

    def __init__(self, config: EfficientNetLiteConfig, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1, activation: bool = True):
        super().__init__()
        self.conv = SamePadConv2d(in_channels, out_channels, kernel_size, stride, groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.act = nn.ReLU6() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class LiteBlock(nn.Module):
    """Inverted bottleneck without squeeze-and-excitation: 1x1 expand (unless the ratio is 1), depthwise conv,
    linear 1x1 projection; a residual connection with stochastic depth when stride and width are unchanged."""

    def __init__(self, config: EfficientNetLiteConfig, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int, expand_ratio: int, drop_rate: float):
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand = ConvNorm(config, in_channels, mid, 1) if expand_ratio != 1 else None
        self.depthwise = ConvNorm(config, mid, mid, kernel_size, stride, groups=mid)
        self.project = ConvNorm(config, mid, out_channels, 1, activation=False)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(x if self.expand is None else self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype) < keep
            out = out * mask / keep
        return out + x


class EfficientNetLitePreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for EfficientNet-Lite models."""

    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet_lite"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["LiteBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.fill_(1.0)
            module.bias.zero_()
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
            module.num_batches_tracked.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, self.config.initializer_range)
            module.bias.zero_()


class EfficientNetLiteModel(EfficientNetLitePreTrainedModel):
    """The EfficientNet-Lite backbone: stem, inverted-bottleneck blocks, 1x1 head, global average pool."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.stem = ConvNorm(config, config.num_channels, config.stem_channels, 3, stride=2)
        total, blocks, channels = sum(config.stage_repeats), [], config.stem_channels
        for out, repeats, kernel, stride, ratio in zip(config.stage_channels, config.stage_repeats,
                                                       config.kernel_sizes, config.strides, config.expand_ratios,
                                                       strict=True):
            for i in range(repeats):
                rate = config.drop_connect_rate * len(blocks) / total
                blocks.append(LiteBlock(config, channels, out, kernel, stride if i == 0 else 1, ratio, rate))
                channels = out
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvNorm(config, channels, config.hidden_size, 1)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> tuple | BaseModelOutputWithPoolingAndNoAttention:
        """Run the backbone.

        Parameters:
            pixel_values (`torch.Tensor` of shape `(batch, channels, height, width)`): normalised images.
            output_hidden_states (`bool`, *optional*): also return the stem's, every block's and the head's
                feature maps.
            return_dict (`bool`, *optional*): return a ``BaseModelOutputWithPoolingAndNoAttention`` (default).
        """
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None \
            else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        x = self.stem(pixel_values)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        x = self.head(x)
        states.append(x)
        pooled = x.mean(dim=(2, 3))
        hidden_states = tuple(states) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (x, pooled, hidden_states) if v is not None)
        return BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=x, pooler_output=pooled,
                                                        hidden_states=hidden_states)


class EfficientNetLiteForImageClassification(EfficientNetLitePreTrainedModel):
    """EfficientNet-Lite with dropout and a linear classifier on the pooled features."""

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.efficientnet_lite = EfficientNetLiteModel(config)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> tuple | ImageClassifierOutputWithNoAttention:
        """Classify images.

        Parameters:
            pixel_values (`torch.Tensor` of shape `(batch, channels, height, width)`): normalised images.
            labels (`torch.Tensor` of shape `(batch,)`, *optional*): class indices; the loss is returned with them.
            output_hidden_states (`bool`, *optional*): also return the backbone's feature maps.
            return_dict (`bool`, *optional*): return an ``ImageClassifierOutputWithNoAttention`` (default).
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.efficientnet_lite(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


AutoConfig.register(MODEL_TYPE, EfficientNetLiteConfig, exist_ok=True)
AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)
AutoModelForImageClassification.register(EfficientNetLiteConfig, EfficientNetLiteForImageClassification,
                                         exist_ok=True)
