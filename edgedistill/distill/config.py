"""Training configuration (task YAML `train:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgedistill.config import MAX_BATCH, Float, Int, Seed, StrictModel


class MultiSourceConfig(StrictModel):
    """Multi-source distillation from similar tasks (docs/method.md); every default is the documented one."""

    similarity: str = Field("knn", description="registered task-similarity metric: knn | linear | logme | leep")
    gamma: Float = Field(0.1, gt=0, description="distill-weighted: alpha = softmax(score / gamma) over the top-k")
    top_k: Int | None = Field(None, ge=1, description="distill-weighted: teachers kept by score (None = all)")
    teacher: Int = Field(0, ge=0, description="single-kd: index of the teacher in the task's list")
    pseudo_labels: str | None = Field(
        None,
        description="head (linear head fit on the labeled split) | native (own logits) | auto (native when the "
        "teacher predicts the task's classes, else head); None = the distiller's default",
    )
    head_c: Float = Field(10.0, gt=0, description="inverse L2 strength of the pseudo-label head")
    lambda_feat: Float = Field(1.0, ge=0, description="weight of the projected-feature regression term")


class FixMatchConfig(StrictModel):
    """The FixMatch baseline (Sohn et al. 2020) with its paper defaults."""

    threshold: Float = Field(0.95, gt=0, le=1, description="confidence a weak-view prediction needs to be a label")
    lambda_u: Float = Field(1.0, ge=0, description="weight of the unlabeled (strong-view) term")


class BankConfig(StrictModel):
    """How the sampled widths of a step teach each other (docs/method.md); every default is the documented one."""

    loss: str = Field("seed", description="registered bank distillation: seed (SlimDA SEED) | inplace (US-Nets)")
    weighting: str = Field("entropy", description="seed: ensemble confidence weight: entropy | max-prob | uniform")
    sharpen: Float = Field(0.5, gt=0, description="seed: sharpening temperature tau of the ensemble")
    temperature: Float = Field(1.0, gt=0, description="softmax temperature of the sampled nets' outputs")
    lambda_seed: Float = Field(1.0, ge=0, description="weight of the SEED term")
    tri_head: bool = Field(False, description="OSTC: adaptation heads C_s, C_t; the deployed C_a gets only SEED")
    lambda_pseudo: Float = Field(1.0, ge=0, description="tri_head: weight of C_t's ensemble pseudo-label CE")
    pseudo_threshold: Float = Field(
        0.95,
        ge=0,
        le=1,
        description="tri_head: an unlabeled image gets the ensemble's pseudo-label only where its top probability "
        "is at least this (0 = every image)",
    )
    bn: Literal["recalibrate", "switchable"] = Field(
        "recalibrate",
        description="recalibrate: shared BN, re-estimated per config after training; switchable: also a private "
        "BN per uniform width (other configs use the shared BN, recalibrated)",
    )


class UdonConfig(StrictModel):
    """Multi-domain training (UDON, docs/method.md); every default is the documented one."""

    sampler: str = Field("udon", description="registered domain sampler: udon (loss-proportional) | uniform")
    beta: Float = Field(1.0, ge=0, description="p_d proportional to (windowed mean loss of domain d)^beta")
    floor: Float = Field(0.1, ge=0, le=1, description="mixed-in uniform share: p_d >= floor / D")
    window: Int = Field(50, ge=1, description="batches per domain the mean loss is taken over")
    temperature: Float = Field(0.1, gt=0, description="udon distiller: logit KD temperature")
    lambda_relational: Float = Field(1.0, ge=0, description="udon distiller: weight of the relational term")
    cosine_head: bool = Field(False, description="cosine-similarity classifier heads in the student")
    batches: Literal["mixed", "domain"] = Field(
        "mixed",
        description="labeled domains (data.domains): mixed (each row's domain drawn with p_d, so BatchNorm sees every "
        "domain in training as after recalibration) | domain (one domain per step, as UDON's paper)",
    )
    teacher: str = Field(
        "head",
        description="udon-online: registered domain teacher on the shared backbone: head (linear projection) | "
        "branch (two-layer MLP), each with an L2-normalised embedding and a cosine classifier",
    )
    teacher_dim: Int = Field(128, ge=1, description="udon-online: embedding width of every domain teacher")
    lambda_teacher: Float = Field(1.0, ge=0, description="udon-online: weight of the domain teachers' cross-entropy")
    online_temperature: Float = Field(
        1.6,
        gt=0,
        description="udon-online: KD temperature on the logits (1.6 on cosine logits 16·cos is UDON's 0.1 on the "
        "cosine); plain KL, no T² scaling",
    )
    map_at_k: Int = Field(5, ge=1, description="universal evaluation: k of the embedding retrieval's mAP@k")


class ResizeConfig(StrictModel):
    """Progressive resizing (EfficientNetV2's progressive learning, FixRes): cheaper steps on smaller images first."""

    scale: Float = Field(
        1.0,
        gt=0,
        le=1,
        description="training images are resized to this fraction of the budget's input side (1 = no resizing)",
    )
    final_steps: Int = Field(
        0, ge=0, description="the last steps run at the budget's input size, so filters and BN adapt to it"
    )
    full_size_every: Int | None = Field(
        None,
        ge=1,
        description="before the final steps, every n-th step also runs at the budget's size (multi-scale training, "
        "so the filters learn both scales); None: never",
    )


class TrainConfig(StrictModel):
    """Sandwich training of the slimmable bank; every default is the documented one."""

    distiller: str = Field(
        "average-kd",
        description="registered distiller: distill-weighted | distill-nearest | single-kd | average-kd | udon | "
        "udon-online | fixmatch | ce-only",
    )
    multisource: MultiSourceConfig = Field(default_factory=MultiSourceConfig)
    fixmatch: FixMatchConfig = Field(default_factory=FixMatchConfig)
    bank: BankConfig = Field(default_factory=BankConfig)
    udon: UdonConfig = Field(default_factory=UdonConfig)
    resize: ResizeConfig = Field(default_factory=ResizeConfig)
    steps: Int = Field(600, ge=1)
    batch_labeled: Int = Field(32, ge=1, le=MAX_BATCH)
    batch_unlabeled: Int = Field(128, ge=0, le=MAX_BATCH)
    lr: Float = Field(3e-3, gt=0)
    pretrained_lr_scale: Float = Field(
        0.1,
        gt=0,
        le=1,
        description="learning-rate factor of the layers a pretrained student loaded (student.options.weights); its "
        "new classifier, the OSTC heads and the distillers' projectors train at train.lr",
    )
    weight_decay: Float = Field(5e-4, ge=0)
    warmup_steps: Int = Field(30, ge=0)
    num_sampled: Int = Field(4, ge=1, description="K subnets per step: largest, smallest and K-2 random")
    kd_temperature: Float = Field(1.0, gt=0)
    lambda_sup: Float = Field(1.0, ge=0)
    lambda_kd: Float = Field(1.0, ge=0)
    lambda_inplace: Float = Field(1.0, ge=0, description="weight of the in-place KD term (bank.loss: inplace)")
    sup_all_widths: bool = Field(True, description="cross-entropy on the labeled batch for every sampled width")
    augment: bool = True
    seed: Seed = 0
    checkpoint_every: Int = Field(100, ge=1)
    keep_checkpoints: Int = Field(2, ge=1)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = False
    compile: bool = False
    bn_calibration_images: Int = Field(2000, ge=1)
    eval_batch: Int = Field(
        64,
        ge=1,
        le=MAX_BATCH,
        description="images per forward when scoring the test split; small batches keep activations in the CPU "
        "caches (the demo's 10,000-image evaluation ran 1.9x faster at 64 than at 1000)",
    )
    micro_batch: Int | None = Field(
        None,
        ge=2,
        le=MAX_BATCH,
        description="images per forward/backward pass: a step's batch is split into micro-batches whose gradients "
        "add up (less memory; faster on CPUs at large inputs); None: the whole step at once",
    )
    deterministic: bool = Field(
        False, description="deterministic torch kernels (bitwise-reproducible resume on GPU too; CPU already is)"
    )
