"""Every knob of the pipeline, with its default and why.

A run is configured by a YAML file whose keys mirror these dataclasses; what
the file leaves out keeps the default below. Unknown keys are an error, so a
typo never silently falls back to a default. Example::

    runs_root: /data/fakeface_runs
    trainer:
      epochs: 30
      backbone: bit-m-r50x1
    evaluator:
      min_auc: 0.95

Runners never hold knobs of their own: switching from the embedded default to
Kubeflow or Dataflow is a different config, not different code.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Dict, List, Optional, TypeVar

import yaml

from fakeface import catalog as catalog_lib
from fakeface import features, images
from fakeface.components.trainer import backbones

_T = TypeVar("_T")
# The notes' Table 4: rotations by up to 15 degrees.
DEFAULT_TTA_ANGLES = (-15.0, 0.0, 15.0)


@dataclasses.dataclass
class SplitConfig:
    """Hash buckets of the output splits, decided by each image's near-duplicate cluster.

    A picture and its re-encoded or resized copies, whose perceptual hashes
    lie within ingest.near_duplicate_bits of each other, share a cluster and
    so a split: a copy cannot leak from train into test. The founding notes hold out 20% for test and split the rest 70/30 into
    train and validation: 56/24/20 of 100 buckets.
    """

    train: int = 56
    eval: int = 24
    test: int = 20


@dataclasses.dataclass
class IngestConfig:
    """What ImageExampleGen takes in; fakeface/images.py states the image contract."""

    # Images with more pixels are quarantined from their header, never
    # decoded. At most the model decoder's own limit, which serving applies.
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    # Images with a shorter side are quarantined: too small to carry artefacts.
    min_side: int = images.DEFAULT_MIN_SIDE
    # 0 keeps every file's original bytes. 1-100 re-encodes every image, real
    # and fake alike, as a baseline JPEG of this quality, so that format and
    # quality can no longer tell the classes apart. This CHANGES THE DATA: it
    # adds JPEG artefacts of its own and removes those of the original saving,
    # and serving still sees files as their senders saved them.
    reencode_jpeg_quality: int = 0
    # True removes EXIF, ICC profiles, JPEG comments and PNG text chunks
    # (fakeface/file_attributes.py) from every file, real and fake alike, so
    # that none of them can tell the classes apart. Unlike re-encoding it keeps
    # every byte of the compressed pixels, and the model's decoder ignores all
    # four, so the model sees the same images. Off by default: the examples
    # then hold each file's bytes exactly as found.
    strip_metadata: bool = False
    # Pictures whose 64-bit perceptual hashes (fakeface/near_duplicates.py)
    # differ in at most this many bits, directly or through a chain of such
    # pictures, are taken for one and share a split; a file this close to a
    # file under the other label is quarantined as a label conflict. 0 joins
    # equal hashes only. At 2, on the sample data, 99.4% or more of each kind
    # of re-encoded or resized copy joined its original, and 1.5% of 100,000
    # distinct pictures were joined to another; at 3, 100% and 5.8%
    # (docs/measurements.md). At most 8: beyond, the search slows and distinct
    # faces are joined in large numbers.
    near_duplicate_bits: int = 2
    # The report warns when an attribute of how the files were saved, alone
    # or all together (fakeface/shortcuts.py), tells real from fake with at
    # least this balanced accuracy in a catalog group, in a dataset against
    # the other label, or pooled.
    shortcut_warning_accuracy: float = 0.9
    # A file whose reading and decoding takes longer is quarantined and its
    # decoder process stopped (components/image_example_gen/sandbox.py), so a
    # file that hangs a decoder cannot hang the run. Decoding a 64 Mpx image
    # takes about a second here; a batch of files gets the same limit and is
    # retried file by file when it runs over.
    decode_timeout_seconds: float = 60.0


@dataclasses.dataclass
class ValidationConfig:
    """What stops a run before Transform (components/data_validation).

    Every anomaly TFDV finds has a severity, ERROR, WARNING or UNKNOWN; those
    listed in fail_on stop the run, the others are warnings, shown at the end
    of `fakeface run`, in the ingestion report and in the evaluation report.
    """

    # TFDV gives ERROR to every schema anomaly: a label outside {0, 1}, an
    # image format or shot outside the schema's domain, a missing feature.
    # [] never stops a run, and lists every anomaly as a warning.
    fail_on: List[str] = dataclasses.field(default_factory=lambda: ["ERROR"])
    # Drift: TFDV's L-infinity distance, per categorical feature, between the
    # share of each value in this run's train split and in the train split the
    # served model was trained on (stored with it when it was pushed), above
    # which the feature drifted. {} checks no drift. 0.1: a source (or class)
    # whose share moved by more than ten percentage points.
    drift_thresholds: Dict[str, float] = dataclasses.field(
        default_factory=lambda: {features.SOURCE: 0.1, features.LABEL: 0.1})
    # The severity a drift anomaly gets. WARNING: drift is reported but does
    # not stop the run, since adding or growing a dataset moves the source mix
    # on purpose; ERROR stops it under the default fail_on.
    drift_severity: str = "WARNING"


@dataclasses.dataclass
class TransformConfig:
    # How an image of any size becomes model input. "resize": the whole image
    # resized to image_size, as in the founding notes. "crop": native-resolution
    # pixels, never resampled, because resizing smooths away the up-sampling
    # fingerprints that give generated images away: training takes one random
    # crop_size crop per image, and evaluation and serving score a fixed grid
    # of crops (crop_tiles_per_side) and average their probabilities.
    input_policy: str = "resize"
    # Square side, in pixels, that every image is resized to under "resize".
    # The sample data is drawn at 64 px, so the default keeps its up-sampling
    # fingerprints intact; real datasets want 299 or more (the notes' 1024 px
    # did best).
    image_size: int = 64
    # Under "crop": the side of every crop. Images with a shorter side are
    # zero-padded to it, centred, rather than enlarged: enlarging would add
    # the very interpolation traces the detector learns to call fake.
    # Wang et al. (2020) trained on 224 px crops of 256 px images.
    crop_size: int = 224
    # Under "crop", at evaluation and serving: 1 scores the centre crop; n > 1
    # an n x n grid of crops, evenly spaced from corner to corner (they overlap
    # when n * crop_size exceeds the side), so the whole image is seen.
    crop_tiles_per_side: int = 1


@dataclasses.dataclass
class TrainerConfig:
    # Backbone name: "small-cnn" (built locally, CPU-sized), "bit-m-r50x1" or
    # "xception" (see components/trainer/backbones.py).
    backbone: str = "small-cnn"
    # Where the backbone's weights come from. For TF Hub backbones a handle: a
    # URL, a bucket path or a local SavedModel folder. For xception: "imagenet"
    # (downloaded by Keras), a path to a weights .h5 file without the top, or
    # "none" for random initialisation. Empty means the backbone's default.
    backbone_handle: str = ""
    # Fine-tune the backbone's weights, not only the head.
    backbone_trainable: bool = True
    # Global batch size, split over the replicas of a multi-GPU node.
    batch_size: int = 16
    epochs: int = 15
    # "sgd": SGD with momentum 0.9 and step decay, as BiT's HyperRule and the
    # notes' ResNet50 runs. "adam": Adam with exponential decay, as the notes'
    # Xception runs. "auto": SGD for bit-* backbones, Adam for the others.
    optimizer: str = "auto"
    # Learning rate after warm-up, at learning_rate_batch_size; scaled linearly
    # to batch_size. The notes: 3e-3 (BiT's HyperRule, at batch 512) for SGD,
    # 1e-2 for Adam. The default suits the small CNN.
    learning_rate: float = 0.002
    learning_rate_batch_size: int = 16
    # Learning rate at the end of the run, scaled like learning_rate; 0 keeps
    # learning_rate throughout (the small CNN's default). The notes: 3e-7 for
    # SGD, 1e-4 for Adam. SGD steps down at decay_boundaries by equal factors;
    # Adam decays exponentially over the run.
    learning_rate_final: float = 0.0
    # Fractions of the run's steps at which SGD's rate steps down (BiT's
    # HyperRule: 30%, 60% and 90%). With the notes' 3e-3 to 3e-7 each step is
    # about 21x; a final rate of learning_rate / 1000 gives BiT's 10x steps.
    decay_boundaries: List[float] = dataclasses.field(default_factory=lambda: [0.3, 0.6, 0.9])
    # Steps over which the rate rises linearly to learning_rate, for either
    # optimizer; BiT uses 500. Large rates on a fresh head can wreck the
    # pre-trained features in the first steps otherwise.
    warmup_steps: int = 0
    # "on": the mixed_float16 policy (float16 compute, float32 weights, loss
    # scaling); "off": float32; "auto": on when a GPU is visible. It speeds up
    # backbones built in-process (xception); TF Hub backbones are SavedModels
    # traced in float32 and keep running in float32, only the head follows the
    # policy. The output probability is float32 either way.
    mixed_precision: str = "auto"
    # Stop when validation AUC has not improved for this many epochs, keeping
    # the best weights; 0 trains every epoch. Off by default: on the sample
    # data validation AUC reaches 1.0 within a few epochs, and the earliest
    # such epoch, which early stopping keeps, separates real from fake with
    # less margin, enough to miss max_real_source_fpr (docs/measurements.md).
    early_stopping_patience: int = 0
    # Weigh the classes inversely to their share of the training split.
    class_weights: bool = True
    # "auto": MirroredStrategy over every GPU when a node has several, else one
    # device. "mirrored": MirroredStrategy over every GPU, or over every logical
    # CPU when there is none (how the tests exercise it). "default": one device.
    strategy: str = "auto"
    # Save a checkpoint every this many steps; a Trainer that is killed (a
    # preempted node) resumes from the last one when it runs again on the same
    # inputs and config.
    checkpoint_every_steps: int = 50
    # Dropout before the classification head.
    dropout: float = 0.2
    # Augmentation of training images; never applied at serving. The founding
    # notes used flips, rotation up to 45 degrees, shifts of 0.15 and zoom of
    # 0.5. Rotation, shift and zoom resample the image, which smooths away the
    # up-sampling fingerprints the detector looks for at native resolution, so
    # only flips are on by default.
    augment_flip: bool = True
    augment_rotation_degrees: float = 0.0
    augment_shift: float = 0.0  # fraction of the side
    augment_zoom: float = 0.0  # scale drawn from [1 - zoom, 1 + zoom]
    # Wang et al. (2020): each training image independently is blurred with
    # this probability (Gaussian, sigma drawn from [0, augment_blur_sigma_max])
    # and, independently, re-encoded as JPEG with this probability (quality
    # drawn from [augment_jpeg_quality_min, augment_jpeg_quality_max]). It
    # teaches the detector to survive the blur and recompression real-world
    # images go through. 0 turns it off.
    augment_blur_jpeg_probability: float = 0.0
    augment_blur_sigma_max: float = 3.0
    augment_jpeg_quality_min: int = 30
    augment_jpeg_quality_max: int = 100
    # Seed for weight initialisation, shuffling and augmentation. Together with
    # TensorFlow's op determinism, the same seed, examples and config give the
    # same model, bit for bit, as far as docs/training.md says.
    seed: int = 0
    # Memory, in MiB, for the train and eval splits' images decoded once by
    # the Transform graph (float32, side x side x 3 x 4 bytes each: about
    # 4,000 images at 299 px, 87,000 at 64 px) and kept for every epoch,
    # under the "resize" input policy. Held in content-hash order, so that the
    # model does not depend on the order of the examples on disk. When the two
    # splits together need more, or under "crop", they are decoded again
    # every epoch, in the order on disk. Filling the cache takes up to twice
    # this for a moment. 0 turns the cache off.
    input_cache_mb: int = 4096
    # Train (and validate) on these catalog sources only; empty takes all. The
    # test split always holds every source, so the Evaluator and the report
    # show how the model does on sources it never saw (`fakeface experiments`).
    train_sources: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class EvaluatorConfig:
    # The decision threshold is chosen by the Trainer on the eval split: the
    # lowest probability of "fake" that calls at most target_fpr of the real
    # images fake. It is stored in the model, which returns it with every
    # decision. A false alarm on a real photo is the costly error. The target
    # sits well below max_real_source_fpr because a rate calibrated on one
    # split moves on another; on the sample data's eval split (about 25 real
    # images) 2% calls none of them fake.
    calibrate_threshold: bool = True
    target_fpr: float = 0.02
    # The threshold when calibrate_threshold is off, or when the eval split
    # holds no real image to calibrate on.
    decision_threshold: float = 0.5
    # A model is blessed only if its overall AUC on the test split reaches this ...
    min_auc: float = 0.75
    # ... its false-positive rate on all real images, and on every real source,
    # is at most this ...
    max_real_source_fpr: float = 0.10
    # ... where that slice holds at least this many real test images; a rate
    # from fewer is shown, but does not decide (one false alarm among four
    # images reads 25%) ...
    min_real_images: int = 20
    # ... and its AUC is not more than this below the baseline's.
    max_auc_drop: float = 0.05
    # The baseline: "served", the model TF Serving serves (the newest version
    # under serving_model_dir, components/served_model), so that a retrain
    # never replaces it with a worse one; or "none", blessing on the absolute
    # thresholds alone. Until a model is served there is no baseline either.
    baseline: str = "served"
    # Robustness columns of the report, on copies of the test images:
    # re-saved as JPEG at a quality drawn per image from this [low, high]
    # range (empty: no column), and scaled by this factor (0: no column).
    robustness_jpeg_quality: List[int] = dataclasses.field(default_factory=lambda: [65, 95])
    robustness_scale: float = 0.5
    # Test-time rotation column of the report: each test image scored as the
    # mean over these rotations in degrees (the notes' Table 4); empty: none.
    tta_angles: List[float] = dataclasses.field(default_factory=lambda: list(DEFAULT_TTA_ANGLES))


@dataclasses.dataclass
class Resources:
    """What a step's container asks Kubernetes for: CPU like "2" or "500m", memory like "8Gi".

    The scheduler places a pod by its requests; the limits cap it.
    """

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclasses.dataclass
class KubeflowConfig:
    """How `fakeface compile` lays the pipeline onto Kubeflow Pipelines v2.

    The YOUR_* defaults are placeholders: a compile with them still succeeds,
    so the spec can be inspected, but a cluster run needs real values.
    """

    # Image with this package installed (Dockerfile), for every step but the Trainer.
    image: str = "ghcr.io/YOUR_ORG/fakeface:0.1.0"
    # The Trainer's image: the GPU variant (Dockerfile.gpu).
    trainer_image: str = "ghcr.io/YOUR_ORG/fakeface-gpu:0.1.0"
    # Artifact store of the runs on the cluster: a gs:// (or s3://) URL, since
    # TFX writes through TensorFlow's file systems. It goes into the compiled
    # spec and into every run `fakeface schedule` creates; without it KFP
    # falls back to its MinIO store, which TensorFlow cannot write.
    pipeline_root: str = "gs://YOUR_BUCKET/fakeface/pipelines"
    # Where the Pusher writes versions for TF Serving: a bucket, or a folder on
    # the model-store volume (serving_pvc).
    serving_model_dir: str = "gs://YOUR_BUCKET/fakeface/serving/fakeface"
    # A PersistentVolumeClaim mounted at serving_pvc_mount_path into the steps
    # that read or write serving_model_dir (ServedModel, EvaluationReport,
    # Pusher), for clusters without a bucket: k8s/overlays/kind's model store,
    # "fakeface-models", with serving_model_dir /models/fakeface. Empty: no volume.
    serving_pvc: str = ""
    serving_pvc_mount_path: str = "/models"
    # The Kubernetes service account of the runs' pods (k8s/base; on GKE bound
    # to a Google service account that may write the bucket).
    service_account: str = "fakeface-pipeline-runner"
    # The steps that run Beam or TFMA over the whole dataset: ImageExampleGen,
    # StatisticsGen, Transform, Evaluator, EvaluationReport.
    beam_resources: Resources = dataclasses.field(default_factory=lambda: Resources(
        cpu_request="2", cpu_limit="4", memory_request="6Gi", memory_limit="12Gi"))
    # The small steps: CuratedSchemaGen, ExampleValidator, ServedStatistics,
    # DistributionValidator, DataValidation, ServedModel, Pusher.
    light_resources: Resources = dataclasses.field(default_factory=lambda: Resources(
        cpu_request="500m", cpu_limit="1", memory_request="1536Mi", memory_limit="3Gi"))
    # The Trainer, sized for the most common GPU node: 8 vCPU and 30 GB with
    # one T4 (GKE n1-standard-8), whose kubelet leaves about 7.9 CPU and
    # 26 GiB allocatable, part of it taken by the node's own daemons.
    trainer_resources: Resources = dataclasses.field(default_factory=lambda: Resources(
        cpu_request="6", cpu_limit="7", memory_request="22Gi", memory_limit="24Gi"))
    # Accelerator resource name and count for the Trainer; 0 trains on CPU.
    trainer_accelerator_type: str = "nvidia.com/gpu"
    trainer_accelerator_count: int = 1
    # A preempted or failed Trainer pod is retried this many times, after
    # trainer_retry_backoff_seconds, doubling each time (at most an hour). A
    # retry resumes from the last checkpoint (trainer.checkpoint_every_steps).
    # Honoured by KFP 2.4.1 and later.
    trainer_retries: int = 2
    trainer_retry_backoff_seconds: int = 60
    # Scheduling onto the GPU node pool. TFX's compiler cannot express these;
    # `fakeface compile` adds them to the Kubernetes platform spec.
    trainer_node_selector: Dict[str, str] = dataclasses.field(
        default_factory=lambda: {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"})
    trainer_tolerations: List[Dict[str, str]] = dataclasses.field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    # Beam options on the cluster; empty keeps beam_pipeline_args. For Dataflow:
    # ["--runner=DataflowRunner", "--project=P", "--region=R",
    #  "--temp_location=gs://B/tmp", "--sdk_container_image=<image>"]; the
    # workers need the image, which has fakeface installed.
    beam_pipeline_args: List[str] = dataclasses.field(default_factory=list)
    # KFP API endpoint and recurring-run schedule for `fakeface schedule`.
    endpoint: str = "http://localhost:8080"
    schedule_cron: str = "0 0 3 * * 1"  # KFP's 6-field cron: Mondays 03:00
    experiment: str = "fakeface"


@dataclasses.dataclass
class PipelineConfig:
    # Also the prefix of every artifact path; KFP needs [a-z0-9-] only.
    pipeline_name: str = "fakeface"
    # Folder under which the embedded runner keeps everything it writes.
    runs_root: str = "fakeface_runs"
    # Dataset catalog (see fakeface/catalog.py). Empty means the sample data
    # made by `fakeface sample-data` under runs_root.
    catalog: str = ""
    # Overrides for the derived locations below; empty means under runs_root.
    pipeline_root: str = ""
    metadata_path: str = ""
    serving_model_dir: str = ""
    # How Transform and the Trainer find their code. "module_file": TFX packages
    # components/transform and components/trainer with the run, so editing them
    # re-runs exactly those steps. "installed": referenced by import path; the
    # image that runs the step must have this package installed (Kubeflow).
    code_source: str = "module_file"
    # Reuse results of components whose inputs, code and settings are unchanged.
    enable_cache: bool = True
    # Beam options for every Beam-based component. On one machine the in-memory
    # DirectRunner avoids starting a TensorFlow worker process per core, which
    # costs more than it saves on small data. For Dataflow, pass e.g.
    # ["--runner=DataflowRunner", "--project=P", "--region=R", "--temp_location=gs://B/tmp"].
    beam_pipeline_args: List[str] = dataclasses.field(
        default_factory=lambda: ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    splits: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    transform: TransformConfig = dataclasses.field(default_factory=TransformConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    evaluator: EvaluatorConfig = dataclasses.field(default_factory=EvaluatorConfig)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)

    @property
    def sample_data_dir(self) -> str:
        return os.path.join(self.runs_root, "sample_data")

    @property
    def catalog_path(self) -> str:
        return self.catalog or os.path.join(self.sample_data_dir, "catalog.yaml")

    @property
    def pipeline_root_path(self) -> str:
        return self.pipeline_root or os.path.join(self.runs_root, "pipelines", self.pipeline_name)

    @property
    def metadata_path_resolved(self) -> str:
        return self.metadata_path or os.path.join(self.runs_root, "metadata.sqlite")

    @property
    def serving_model_dir_path(self) -> str:
        return self.serving_model_dir or os.path.join(self.runs_root, "serving", self.pipeline_name)

    @property
    def local_hub_dir(self) -> str:
        """Where locally built backbones are saved as TF Hub modules."""
        return os.path.join(self.runs_root, "hub")


BASELINES = ("served", "none")
CODE_SOURCES = ("module_file", "installed")
# TFDV's anomaly severities (tensorflow_metadata's AnomalyInfo.Severity).
SEVERITIES = ("ERROR", "WARNING", "UNKNOWN")
STRATEGIES = ("auto", "mirrored", "default")
INPUT_POLICIES = ("resize", "crop")
OPTIMIZERS = ("auto", "sgd", "adam")
MIXED_PRECISION = ("auto", "on", "off")
MAX_NEAR_DUPLICATE_BITS = 8
# Keras' Xception refuses smaller inputs: its strided layers would reach zero size.
XCEPTION_MIN_SIDE = 71


def model_input_size(transform: Dict[str, Any]) -> int:
    """The side of the square images the model takes: crop_size under "crop", else image_size.

    `transform` is the transform section as a mapping, as Transform and the
    Trainer receive it in their custom_config.
    """
    if transform["input_policy"] == "crop":
        return int(transform["crop_size"])
    return int(transform["image_size"])


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


def _build(default: _T, data: Dict[str, Any], where: str, section: str = "") -> _T:
    """`default` with the keys of `data` replaced, each checked against the default's type.

    Errors name the file `where` and the key within its section ("trainer.epochs").
    """
    prefix = f"{section}." if section else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {section or 'the top level'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = sorted(f"{prefix}{name}" for name in set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys{' of ' + section if section else ''} "
                          f"are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = _build(current, value, where, prefix + name)
            continue
        expected = type(current)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            # YAML 1.1 reads on, off, yes and no as booleans.
            hint = "; quote it, as in \"on\"" if expected is str and isinstance(value, bool) else ""
            raise ConfigError(f"{where}: {prefix}{name}: expected {fields[name].type}, got {value!r}{hint}")
        kwargs[name] = value
    return dataclasses.replace(default, **kwargs)


def from_dict(data: Dict[str, Any], where: str = "config") -> PipelineConfig:
    config = _build(PipelineConfig(), data or {}, where)
    validate(config, where)
    return config


def load(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
    """The defaults, updated by the YAML file at `path`, then by `overrides`."""
    data: Dict[str, Any] = {}
    where = "config"
    if path:
        where = path
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: config file not found")
        with open(path, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return from_dict(_deep_merge(data, overrides or {}), where)


def _deep_merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _one_of(value: str, allowed, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: must be one of {list(allowed)}, got {value!r}")


def validate(config: PipelineConfig, where: str = "config") -> None:
    """Raises ConfigError, naming `where` (the file) and the key, at the first unusable knob."""
    _validate_pipeline(config, where)
    _validate_data(config, where)
    _validate_validation(config.validation, f"{where}: validation")
    _validate_transform(config.transform, f"{where}: transform")
    _validate_trainer(config.trainer, f"{where}: trainer")
    _validate_optimization(config.trainer, f"{where}: trainer")
    _validate_augmentation(config.trainer, f"{where}: trainer")
    _validate_backbone_input(config, where)
    _validate_evaluator(config.evaluator, f"{where}: evaluator")


def _validate_pipeline(config: PipelineConfig, where: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", config.pipeline_name):
        raise ConfigError(f"{where}: pipeline_name: {config.pipeline_name!r} must match "
                          "[a-z0-9][a-z0-9-]{0,127} (Kubeflow's rule)")
    if not all(isinstance(arg, str) for arg in config.beam_pipeline_args):
        raise ConfigError(f"{where}: beam_pipeline_args: must be a list of strings")
    _one_of(config.code_source, CODE_SOURCES, f"{where}: code_source")


def _validate_data(config: PipelineConfig, where: str) -> None:
    for name in ("train", "eval", "test"):
        if getattr(config.splits, name) <= 0:
            raise ConfigError(f"{where}: splits.{name}: must be a positive number of buckets")
    if not 0 <= config.ingest.reencode_jpeg_quality <= 100:
        raise ConfigError(f"{where}: ingest.reencode_jpeg_quality: must be 0 (keep the original "
                          "bytes) or a JPEG quality from 1 to 100")
    if not 0 <= config.ingest.near_duplicate_bits <= MAX_NEAR_DUPLICATE_BITS:
        raise ConfigError(f"{where}.ingest.near_duplicate_bits: must be from 0 (equal hashes only) "
                          f"to {MAX_NEAR_DUPLICATE_BITS}")
    if not 0.5 < config.ingest.shortcut_warning_accuracy <= 1.0:
        raise ConfigError(f"{where}.ingest.shortcut_warning_accuracy: must be above 0.5 (chance) and at most 1")
    if config.ingest.min_side < 1 or config.ingest.max_pixels < config.ingest.min_side ** 2:
        raise ConfigError(f"{where}: ingest: min_side must be at least 1 and max_pixels at least min_side squared")
    if config.ingest.max_pixels > images.DEFAULT_MAX_PIXELS:
        raise ConfigError(f"{where}: ingest.max_pixels: at most {images.DEFAULT_MAX_PIXELS}, the limit of the "
                          "model's decoder, which would refuse larger images at serving")
    if config.ingest.decode_timeout_seconds <= 0:
        raise ConfigError(f"{where}: ingest.decode_timeout_seconds: must be positive")


def _validate_transform(transform: TransformConfig, where: str) -> None:
    if transform.image_size < 16:
        raise ConfigError(f"{where}.image_size: must be at least 16 pixels")
    _one_of(transform.input_policy, INPUT_POLICIES, f"{where}.input_policy")
    if transform.crop_size < 16 or transform.crop_tiles_per_side < 1:
        raise ConfigError(f"{where}: crop_size must be at least 16 pixels and "
                          "crop_tiles_per_side at least 1")


def _validate_trainer(trainer: TrainerConfig, where: str) -> None:
    _one_of(trainer.backbone, backbones.BACKBONES, f"{where}.backbone")
    if trainer.batch_size < 1 or trainer.epochs < 1:
        raise ConfigError(f"{where}: batch_size and epochs must be at least 1")
    _one_of(trainer.strategy, STRATEGIES, f"{where}.strategy")
    _one_of(trainer.mixed_precision, MIXED_PRECISION, f"{where}.mixed_precision")
    if trainer.learning_rate_batch_size < 1 or trainer.checkpoint_every_steps < 1:
        raise ConfigError(f"{where}: learning_rate_batch_size and checkpoint_every_steps "
                          "must be at least 1")
    if trainer.input_cache_mb < 0:
        raise ConfigError(f"{where}.input_cache_mb: must be 0 (no cache) or more MiB")
    if trainer.early_stopping_patience < 0:
        raise ConfigError(f"{where}.early_stopping_patience: must be 0 (off) or more")
    if not all(isinstance(name, str) and name for name in trainer.train_sources):
        raise ConfigError(f"{where}.train_sources: must be a list of catalog source names")


def _validate_validation(validation: ValidationConfig, where: str) -> None:
    for severity in validation.fail_on:
        _one_of(severity, SEVERITIES, f"{where}.fail_on")
    _one_of(validation.drift_severity, SEVERITIES, f"{where}.drift_severity")
    for name, threshold in validation.drift_thresholds.items():
        # L-infinity compares the shares of values: categorical features only,
        # which are the ones evaluation slices by.
        _one_of(name, features.SLICE_FEATURES, f"{where}.drift_thresholds")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ConfigError(f"{where}.drift_thresholds.{name}: must be a distance above 0 and at most 1, "
                              f"got {threshold!r}")


def _validate_optimization(trainer: TrainerConfig, where: str) -> None:
    _one_of(trainer.optimizer, OPTIMIZERS, f"{where}.optimizer")
    if trainer.learning_rate <= 0:
        raise ConfigError(f"{where}.learning_rate: must be positive")
    if not 0 <= trainer.learning_rate_final <= trainer.learning_rate:
        raise ConfigError(f"{where}.learning_rate_final: must be 0 (constant rate) or a rate "
                          f"no higher than learning_rate, got {trainer.learning_rate_final!r}")
    boundaries = trainer.decay_boundaries
    if (not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < 1 for b in boundaries)
            or list(boundaries) != sorted(set(boundaries))):
        raise ConfigError(f"{where}.decay_boundaries: must be increasing fractions of the run "
                          f"between 0 and 1, got {boundaries!r}")
    if trainer.warmup_steps < 0:
        raise ConfigError(f"{where}.warmup_steps: must be 0 (no warm-up) or more")


def _validate_augmentation(trainer: TrainerConfig, where: str) -> None:
    if not (0 <= trainer.augment_rotation_degrees <= 180 and 0 <= trainer.augment_shift < 1
            and 0 <= trainer.augment_zoom < 1):
        raise ConfigError(f"{where}.augment_*: rotation must be 0-180 degrees, shift and zoom "
                          "fractions in [0, 1)")
    # The blur kernel reaches 3 sigma and mirrors at the borders, which needs
    # the smallest model input (16 px) to be wider than that reach.
    if not (0.0 <= trainer.augment_blur_jpeg_probability <= 1.0 and 0 <= trainer.augment_blur_sigma_max <= 5
            and 1 <= trainer.augment_jpeg_quality_min <= trainer.augment_jpeg_quality_max <= 100):
        raise ConfigError(f"{where}.augment_blur_jpeg_*: probability must be in [0, 1], "
                          "blur sigma from 0 to 5, and 1 <= jpeg_quality_min <= jpeg_quality_max <= 100")


def _validate_backbone_input(config: PipelineConfig, where: str) -> None:
    model_side = model_input_size(dataclasses.asdict(config.transform))
    if config.trainer.backbone == "xception" and model_side < XCEPTION_MIN_SIDE:
        raise ConfigError(f"{where}: transform: xception takes images of at least {XCEPTION_MIN_SIDE} px; "
                          f"the model input is {model_side} px")


def _validate_evaluator(evaluator: EvaluatorConfig, where: str) -> None:
    _one_of(evaluator.baseline, BASELINES, f"{where}.baseline")
    if not 0.0 < evaluator.decision_threshold < 1.0:
        raise ConfigError(f"{where}.decision_threshold: must be between 0 and 1")
    if not 0.0 <= evaluator.target_fpr < 1.0:
        raise ConfigError(f"{where}.target_fpr: must be at least 0 and below 1")
    if evaluator.min_real_images < 1:
        raise ConfigError(f"{where}.min_real_images: must be at least 1")
    for name in ("min_auc", "max_real_source_fpr"):
        if not 0.0 <= getattr(evaluator, name) <= 1.0:
            raise ConfigError(f"{where}.{name}: must be between 0 and 1")
    quality = evaluator.robustness_jpeg_quality
    if quality and not (len(quality) == 2 and all(isinstance(q, int) for q in quality)
                        and 1 <= quality[0] <= quality[1] <= 100):
        raise ConfigError(f"{where}.robustness_jpeg_quality: must be [] or [low, high] "
                          f"JPEG qualities with 1 <= low <= high <= 100, got {quality!r}")
    if not 0.0 <= evaluator.robustness_scale < 1.0:
        raise ConfigError(f"{where}.robustness_scale: must be 0 (off) or a factor below 1")
    if not all(isinstance(a, (int, float)) and -180 <= a <= 180 for a in evaluator.tta_angles):
        raise ConfigError(f"{where}.tta_angles: must be a list of angles in degrees, -180 to 180")


def check_train_sources(config: PipelineConfig, catalog: catalog_lib.Catalog, where: str = "config") -> None:
    """`trainer.train_sources` names datasets of `catalog`, of both classes, or none (all of them)."""
    labels = {d.name: d.label_name for d in catalog.datasets}
    sources = config.trainer.train_sources
    unknown = sorted(set(sources) - set(labels))
    if unknown:
        raise ConfigError(f"{where}: trainer.train_sources: {unknown} are not datasets of the catalog "
                          f"{catalog.path} (it has {list(labels)})")
    if sources and len({labels[s] for s in sources}) < 2:
        raise ConfigError(f"{where}: trainer.train_sources: {sources} are all {labels[sources[0]]}; "
                          "a detector needs real and fake datasets to train on")


def to_dict(config: PipelineConfig) -> Dict[str, Any]:
    return dataclasses.asdict(config)
