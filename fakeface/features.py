"""Every feature name of the pipeline, defined once.

ExampleGen writes the raw features, the curated schema in `schemas/` is built
from them, Transform and the Trainer read them, and the TFMA slices are named
after them. Renaming a feature here renames it everywhere.
"""

# Raw features written by ImageExampleGen.
IMAGE_BYTES = "image_bytes"  # the original encoded file, never re-encoded
LABEL = "label"  # 1 for a generated (fake) image, 0 for a real photograph
SOURCE = "source"  # dataset name from the catalog, e.g. "FFHQ_Orig"
GENERATOR = "generator"  # generator or camera origin, e.g. "StyleGAN2", "camera"
SHOT = "shot"  # framing: "close-up" or "wide"
CONTENT_HASH = "content_sha256"  # hex SHA-256 of IMAGE_BYTES; exact duplicates share it
# 64-bit average hash of the pixels (fakeface/images.py); decides the split, so
# an image and its re-encoded or resized copies land in the same split.
PERCEPTUAL_HASH = "perceptual_hash"
IMAGE_FORMAT = "image_format"  # "JPEG", "PNG", ... as identified by Pillow
WIDTH = "width"
HEIGHT = "height"
JPEG_QUALITY = "jpeg_quality"  # estimated IJG quality, 1-100; 0 when not a JPEG
# The shorter side's size class (fakeface/images.py), one of RESOLUTION_BUCKETS:
# a slice that shows whether resolution alone gives the class away.
RESOLUTION_BUCKET = "resolution_bucket"
RELATIVE_PATH = "relative_path"  # path below the dataset's root folder

# Transformed features produced by Transform's preprocessing_fn.
# float32 in [0, 1]: [size, size, 3] under the "resize" input policy,
# [tiles, crop, crop, 3] under "crop".
IMAGE = "image"
# Why an image could not be decoded (not an image, over the pixel limit,
# corrupt); "" for every image that was. Also a serving output.
IMAGE_ERROR = "image_error"

# Label values.
REAL = 0
FAKE = 1
LABEL_NAMES = {REAL: "real", FAKE: "fake"}

# Resolution buckets: (name, smallest shorter side in pixels), ascending.
RESOLUTION_BUCKETS = (("under-256", 0), ("256-511", 256), ("512-1023", 512), ("1024-plus", 1024))

# Shot values.
CLOSE_UP = "close-up"
WIDE = "wide"
SHOTS = (CLOSE_UP, WIDE)

STRING_FEATURES = (
    IMAGE_BYTES,
    SOURCE,
    GENERATOR,
    SHOT,
    CONTENT_HASH,
    PERCEPTUAL_HASH,
    IMAGE_FORMAT,
    RESOLUTION_BUCKET,
    RELATIVE_PATH,
)
INT_FEATURES = (LABEL, WIDTH, HEIGHT, JPEG_QUALITY)
RAW_FEATURES = STRING_FEATURES + INT_FEATURES

# What a client sends at serving time: only the encoded image.
SERVING_FEATURES = (IMAGE_BYTES,)

# Features by which evaluation metrics are sliced, one at a time. Format and
# resolution make shortcuts visible: a detector that keys on them, not on the
# pixels, scores very differently across their slices.
SLICE_FEATURES = (SOURCE, SHOT, GENERATOR, LABEL, IMAGE_FORMAT, RESOLUTION_BUCKET)

# Serving signature names: encoded image bytes in; serialized tf.Examples in
# (TFMA); and the Classify API's (tf.Examples in, classes and scores out).
SIGNATURE_BYTES = "serving_default"
SIGNATURE_EXAMPLES = "serving_examples"
SIGNATURE_CLASSIFY = "serving_classify"

# Serving signature output names.
FAKE_PROBABILITY = "fake_probability"
IS_FAKE = "is_fake"
THRESHOLD = "threshold"
# The probability mapped piecewise-linearly so that the model's threshold
# lands on 0.5: ranks images exactly as the probability does, and is what
# the Evaluator's thresholded metrics read, at 0.5.
DECISION_SCORE = "decision_score"
# When the model was trained, UTC (e.g. 20261129T123349Z): the model's own id.
MODEL_VERSION = "model_version"
# The version number TF Serving serves a model under: the Pusher's, chosen at
# push time, so the model cannot know it. Clients record it per answer
# (serving/client.py), beside MODEL_VERSION.
SERVED_VERSION = "served_version"
