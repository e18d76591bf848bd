"""Peak memory of one request to the pushed model, and the pixel limit the serving pod's memory allows.

    .venv/bin/python benchmarks/serving_memory.py [--model DIR] [--megapixels 63]

Every case runs in a fresh child process: it loads the model, warms it up on
one small image, and notes its resident memory (the loaded model); it then
reads the request's files, calls serving_default once, and reports the peak
resident memory above the loaded model (VmHWM, reset after the warm-up through
/proc/self/clear_refs). The child's lifetime peak, model loading included,
comes from /usr/bin/time when there is one.

Cases: one and 32 JPEGs of --megapixels (decoded down-scaled in the DCT
domain); the same JPEG through a full decode and resize (the Transform code's
decode() and tf.image.resize, as the graph did before it scaled large JPEGs
down); and one PNG of that size, which no decoder can scale down, so it costs
what the pixel limit lets any non-JPEG image cost.

The sizing: TF Serving runs num_batch_threads batches at once and the Transform
graph decodes one image of a batch at a time, so at most that many images are
decoded at once; beside them are the loaded versions (models.config keeps 2:
the process and the first, as measured, and the size of the SavedModel for
each further one) and the requests in flight. The pod's memory limit comes
from k8s/base/deployment.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict

import fakeface  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024
TIME = "/usr/bin/time"


def _status(field: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def child(model_dir: str, path: str, count: int, full_decode: bool) -> Dict[str, float]:
    """One request in this process: the loaded model's memory and the request's peak above it."""
    import tensorflow as tf

    from fakeface import sample_data
    from fakeface.components.transform import preprocessing

    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    small = sample_data.encode_jpeg(sample_data.render_image(sample_data.SOURCES[0], 0, 64, seed=0))
    if full_decode:
        size = int(json.load(open(os.path.join(model_dir, "assets.extra", "training.json")))
                   ["config"]["transform"]["image_size"])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def run(data):
            return tf.map_fn(lambda one: tf.image.resize(preprocessing.decode(one), [size, size], antialias=True),
                             data, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
    else:
        def run(data):
            return signature(image_bytes=data)
    run(tf.constant([small]))
    loaded = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    with open(path, "rb") as f:
        data = f.read()
    outputs = run(tf.constant([data] * count))
    if not full_decode:
        reasons = {r.decode() for r in outputs["image_error"].numpy()}
        assert reasons == {""}, reasons
    return {"loaded_mib": loaded / MIB, "peak_above_loaded_mib": (_status("VmHWM") - loaded) / MIB,
            "file_mib": len(data) / MIB}


def make_files(megapixels: float, out_dir: str) -> Dict[str, str]:
    """A photo-like JPEG and PNG of about `megapixels`: a sample face, enlarged, with sensor grain."""
    import numpy as np
    from PIL import Image

    from fakeface import sample_data

    height = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    width = int(megapixels * 1e6 / height)
    face = Image.fromarray(sample_data.render_image(sample_data.SOURCES[0], 0, 1024, seed=0))
    pixels = np.asarray(face.resize((width, height), Image.BICUBIC), np.int16)
    grain = np.random.default_rng(0).normal(0, 2.0, pixels.shape).round().astype(np.int16)
    image = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
    paths = {"JPEG": os.path.join(out_dir, "photo.jpg"), "PNG": os.path.join(out_dir, "photo.png")}
    image.save(paths["JPEG"], format="JPEG", quality=90)
    image.save(paths["PNG"], format="PNG", compress_level=1)
    return paths


def run_child(model_dir: str, path: str, count: int, full_decode: bool, work: str) -> Dict[str, float]:
    command = [sys.executable, __file__, "--child", path, "--model", model_dir, "--count", str(count)]
    command += ["--full-decode"] if full_decode else []
    timed = os.path.join(work, "maxrss")
    if os.path.exists(TIME):
        command = [TIME, "-f", "%M", "-o", timed] + command
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"serving_memory: the child failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # /usr/bin/time -f %M: the child's maximum resident set size, in KiB.
    result["child_peak_mib"] = int(open(timed).read().split()[-1]) / 1024 if os.path.exists(TIME) else float("nan")
    return result


def pod() -> Dict[str, int]:
    """The serving pod's memory limit, versions kept loaded and batch threads, from the repository's files."""
    import yaml

    with open(os.path.join(REPO, "k8s", "base", "deployment.yaml")) as f:
        deployment = yaml.safe_load(f)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    limit = container["resources"]["limits"]["memory"]
    units = {"Gi": 1024 ** 3, "Mi": 1024 ** 2}
    memory = int(limit[:-2]) * units[limit[-2:]]
    with open(os.path.join(REPO, "serving", "models.config")) as f:
        versions = int(re.search(r"num_versions:\s*(\d+)", f.read()).group(1))
    with open(os.path.join(REPO, "serving", "batching_parameters.pbtxt")) as f:
        threads = int(re.search(r"num_batch_threads\s*\{\s*value:\s*(\d+)", f.read()).group(1))
    return {"memory": memory, "versions": versions, "threads": threads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the pushed model: a version folder or the base path of versions "
                                        "(default: the config's serving model dir)")
    parser.add_argument("--config", help="YAML config whose serving model dir holds the pushed model")
    parser.add_argument("--megapixels", type=float, default=63.0, help="size of the test images (default 63)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--full-decode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from fakeface.serving import client as client_lib

    if args.child:
        print(json.dumps(child(client_lib.resolve_model_dir(args.model), args.child, args.count, args.full_decode)))
        return 0

    from fakeface.components.transform import preprocessing
    from fakeface.pipeline import config as config_lib

    model_dir = client_lib.resolve_model_dir(args.model or config_lib.load(args.config).serving_model_dir_path)
    print(f"Model: {model_dir}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="fakeface-memory-") as work:
        files = make_files(args.megapixels, work)
        from PIL import Image

        width, height = Image.open(files["JPEG"]).size
        pixels = width * height
        print(f"Images: {width}x{height} ({pixels / 1e6:.1f} Mpx); JPEG {os.path.getsize(files['JPEG']) / MIB:.1f} "
              f"MiB, PNG {os.path.getsize(files['PNG']) / MIB:.1f} MiB")
        cases = [("1 JPEG", files["JPEG"], 1, False), ("32 JPEGs", files["JPEG"], 32, False),
                 ("1 JPEG, full decode (before DCT scaling)", files["JPEG"], 1, True),
                 ("1 PNG", files["PNG"], 1, False)]
        print(f"{'request':<42} {'loaded MiB':>10} {'files MiB':>9} {'peak above loaded MiB':>22} "
              f"{'child peak MiB':>15}")
        results = {}
        for name, path, count, full in cases:
            result = run_child(model_dir, path, count, full, work)
            results[name] = result
            print(f"{name:<42} {result['loaded_mib']:10.0f} {result['file_mib'] * count:9.0f} "
                  f"{result['peak_above_loaded_mib']:22.0f} {result['child_peak_mib']:15.0f}")

    limits = pod()
    per_pixel = results["1 PNG"]["peak_above_loaded_mib"] * MIB / pixels
    model_bytes = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(model_dir)
                      for name in names)
    resident = results["1 JPEG"]["loaded_mib"] * MIB + (limits["versions"] - 1) * model_bytes
    decoding = limits["threads"] * per_pixel * preprocessing.MAX_PIXELS
    print(f"\nPod: {limits['memory'] / MIB:.0f} MiB limit, {limits['versions']} versions loaded "
          f"({resident / MIB:.0f} MiB: the process with one, {model_bytes / MIB:.0f} MiB more for each other), "
          f"{limits['threads']} batch threads, each decoding one image at a time.")
    print(f"A PNG (as a GIF, a BMP, or a JPEG under twice the input size) costs {per_pixel:.1f} bytes per pixel "
          f"while decoded: {per_pixel * preprocessing.MAX_PIXELS / MIB:.0f} MiB at the limit of "
          f"{preprocessing.MAX_PIXELS / 1e6:.0f} Mpx, {decoding / MIB:.0f} MiB for {limits['threads']} at once.")
    print(f"Left for the requests in flight: {(limits['memory'] - resident - decoding) / MIB:.0f} MiB. "
          f"The largest pixel limit that leaves 1 GiB for them: "
          f"{(limits['memory'] - resident - 1024 * MIB) / (limits['threads'] * per_pixel) / 1e6:.0f} Mpx.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
