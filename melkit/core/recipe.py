"""Training recipes: hyperparameters as dataclasses, saved in the run's config.json.

``default``: melkit's transfer recipe (frozen-base head, then fine-tune the top of the base).
``paper``:   exactly the paper (frozen ImageNet base, RMSprop 1e-4, 10 epochs, BCE, threshold 0.5).
``scratch``: every layer trained from random init (the offline demo, where no ImageNet weights exist).
``multisource``: release 2.0.0's: ``default`` plus source balance, Shades of Gray, a deeper fine-tune and
label smoothing, at 224 px (chosen in benchmarks/sources_ablation.py).
``tiny``:    ``scratch`` at 48 px in seconds, for tests and benchmarks (a function only, not a ``--recipe``).
A JSON file with the same fields is also a recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from melkit.data.augment import AugmentParams
from melkit.data.contract import CONTRACT, Contract
from melkit.util.errors import BadInputError
from melkit.util.files import read_json


@dataclass
class Stage:
    name: str
    trainable: str  # "head", "all" or "from:LAYER"
    epochs: int
    learning_rate: float
    optimizer: str = "adam"  # adam | rmsprop
    augment: bool = False
    early_stopping_patience: int = 0  # 0 = off; else stop after this many epochs without a better val AUC


@dataclass
class Recipe:
    name: str
    stages: list
    image_size: int = 160
    alpha: float = 1.0
    batch_size: int = 32
    dropout: float = 0.2
    class_weights: bool = True
    # Starts from ImageNet weights (train's --weights auto picks imagenet); False: from random init (scratch).
    pretrained: bool = True
    oversample: bool = False
    # Several sources (--data A --data B): draw each training batch equally from every source, so the
    # largest one does not drown the others (class weights still apply within).
    source_balance: bool = False
    # The contract's optional Shades of Gray step (preprocess.shades_of_gray), for training and every client.
    color_constancy: bool = False
    bn_inference: bool = True  # BatchNorm frozen (inference mode) in every stage
    # None keeps Keras' 0.999. A short from-scratch run needs ~0.9, or the moving statistics never
    # catch up and the model is constant in inference mode (AUC 0.5 on validation).
    bn_momentum: float | None = None
    # Targets 0/1 become s/2 and 1 - s/2: less over-confident scores, which may transfer better to other devices.
    label_smoothing: float = 0.0
    threshold_policy: str = "youden"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: AugmentParams = field(default_factory=AugmentParams)

    @property
    def contract(self) -> Contract:
        """The preprocessing contract a model of this recipe takes (its size, and colour constancy if set)."""
        return CONTRACT.for_size(self.image_size).with_color_constancy(self.color_constancy)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise BadInputError(f"unknown recipe field(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        try:
            d["stages"] = [Stage(**s) for s in d.get("stages", [])]
            d["augment"] = AugmentParams(**d.get("augment", {}))
            recipe = cls(**d)
        except TypeError as e:
            raise BadInputError(f"bad recipe: {e}") from None
        recipe.validate()
        return recipe

    def validate(self) -> "Recipe":
        if not self.stages:
            raise BadInputError("a recipe needs at least one stage")
        if self.image_size < 32:
            raise BadInputError(f"image size {self.image_size} too small (MobileNetV2 needs >= 32)")
        if not 0 <= self.label_smoothing < 0.5:
            raise BadInputError(f"label smoothing {self.label_smoothing} must be in [0, 0.5)")
        if not 0 < self.val_fraction < 0.5 or not 0 < self.test_fraction < 0.5:
            raise BadInputError("val and test fractions must be in (0, 0.5)")
        for s in self.stages:
            if s.epochs < 1 or s.learning_rate <= 0:
                raise BadInputError(f"stage {s.name}: epochs must be >= 1 and learning rate > 0")
            if s.optimizer not in ("adam", "rmsprop"):
                raise BadInputError(f"stage {s.name}: optimizer must be adam or rmsprop")
        return self

    def with_epochs(self, epochs: list) -> "Recipe":
        if len(epochs) != len(self.stages):
            raise BadInputError(
                f"--epochs needs one number per stage of recipe {self.name} "
                f"({', '.join(s.name for s in self.stages)})"
            )
        return replace(self, stages=[replace(s, epochs=e) for s, e in zip(self.stages, epochs)])


def default_recipe() -> Recipe:
    return Recipe(
        name="default",
        stages=[
            # Frozen base, no augmentation: features are computed once and only the head trains.
            Stage("head", "head", epochs=15, learning_rate=1e-3),
            # Then the last inverted-residual blocks adapt to dermoscopy, slowly, with augmentation.
            Stage("finetune", "from:block_13_expand", epochs=10, learning_rate=1e-4, augment=True,
                  early_stopping_patience=3),
        ],
    )


def paper_recipe() -> Recipe:
    return Recipe(
        name="paper",
        stages=[Stage("frozen", "head", epochs=10, learning_rate=1e-4, optimizer="rmsprop")],
        image_size=224,
        class_weights=False,
        threshold_policy="fixed:0.5",
    )


def scratch_recipe() -> Recipe:
    return Recipe(
        name="scratch",
        stages=[Stage("scratch", "all", epochs=20, learning_rate=2e-3, augment=True, early_stopping_patience=6)],
        image_size=96,
        alpha=0.35,
        pretrained=False,
        bn_inference=False,
        bn_momentum=0.9,
    )


def multisource_recipe() -> Recipe:
    """Release 2.0.0's recipe, for several sources (HAM10000 + ISIC 2017): each change on top of ``default``
    helped ISIC 2016 (never trained on) in benchmarks/sources_ablation.py without costing validation."""
    return Recipe(
        name="multisource",
        stages=[
            Stage("head", "head", epochs=15, learning_rate=1e-3),
            # Deeper than default (block 10, not 13): more of the backbone adapts to other devices' images.
            Stage("finetune", "from:block_10_expand", epochs=6, learning_rate=1e-4, augment=True,
                  early_stopping_patience=3),
        ],
        image_size=224,
        source_balance=True,
        color_constancy=True,
        label_smoothing=0.1,
    )


def tiny_recipe() -> Recipe:
    """The smallest recipe that still learns: ``scratch`` shrunk to a 48-px alpha-0.35 MobileNetV2, every layer
    for 12 epochs, then the top blocks fine-tuned for 2. It learns the synthetic ABCD task of ``data synth``
    (160 lesions) in ~25 s on 2 CPU cores (val AUC ~0.9); at 32 px the last feature map is 1x1 and it learns far
    slower. The tests' and benchmarks' recipe, trained with ``--weights none`` (``pretrained`` keeps its
    default, as its runs' config.json always had). Not in PRESETS: a ``--recipe`` choice would change what a
    model card of such a run says about its recipe."""
    return Recipe(
        name="tiny",
        stages=[Stage("scratch", "all", epochs=12, learning_rate=2e-3, augment=True),
                Stage("finetune", "from:block_15_expand", epochs=2, learning_rate=1e-4, augment=True,
                      early_stopping_patience=2)],
        image_size=48,
        alpha=0.35,
        batch_size=16,
        bn_inference=False,
        bn_momentum=0.9,  # as scratch: BatchNorm statistics must catch up within a short run
    )


PRESETS = {"default": default_recipe, "paper": paper_recipe, "scratch": scratch_recipe,
           "multisource": multisource_recipe}


def load_recipe(name_or_path: str) -> Recipe:
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]().validate()
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return Recipe.from_dict(read_json(path))  # BadInputError for a torn or too deeply nested file
    raise BadInputError(f"unknown recipe {name_or_path!r}: use {', '.join(PRESETS)} or a recipe .json file")
