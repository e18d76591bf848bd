"""fakeface: a TFX pipeline that detects GAN-generated face images.

The folders at the top of the repository are the sub-packages of `fakeface`:
`pipeline/` is `fakeface.pipeline`, `components/` is `fakeface.components`
and `serving/` is `fakeface.serving`, `schemas/` is `fakeface.schemas`. Exact dependency versions live in
requirements.lock; the ranges here are what the code needs.
"""

import setuptools

setuptools.setup(
    name="fakeface",
    version="0.1.0",
    description="TFX pipeline that detects GAN-generated face images",
    python_requires=">=3.10,<3.11",
    package_dir={
        "fakeface": "fakeface",
        "fakeface.pipeline": "pipeline",
        "fakeface.components": "components",
        "fakeface.components.image_example_gen": "components/image_example_gen",
        "fakeface.components.transform": "components/transform",
        "fakeface.components.trainer": "components/trainer",
        "fakeface.components.evaluation_report": "components/evaluation_report",
        "fakeface.components.curated_schema": "components/curated_schema",
        "fakeface.components.served_model": "components/served_model",
        "fakeface.components.evaluator": "components/evaluator",
        "fakeface.components.reporting": "components/reporting",
        "fakeface.components.served_statistics": "components/served_statistics",
        "fakeface.components.pusher": "components/pusher",
        "fakeface.components.distribution_validator": "components/distribution_validator",
        "fakeface.components.data_validation": "components/data_validation",
        "fakeface.serving": "serving",
        "fakeface.schemas": "schemas",
    },
    packages=[
        "fakeface",
        "fakeface.pipeline",
        "fakeface.components",
        "fakeface.components.image_example_gen",
        "fakeface.components.transform",
        "fakeface.components.trainer",
        "fakeface.components.evaluation_report",
        "fakeface.components.curated_schema",
        "fakeface.components.served_model",
        "fakeface.components.evaluator",
        "fakeface.components.reporting",
        "fakeface.components.served_statistics",
        "fakeface.components.pusher",
        "fakeface.components.distribution_validator",
        "fakeface.components.data_validation",
        "fakeface.serving",
        "fakeface.schemas",
    ],
    package_data={"fakeface.schemas": ["*.pbtxt"], "fakeface.serving": ["*.config", "*.pbtxt"],
                  "fakeface.components.reporting": ["templates/*.html", "templates/*.css"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow>=2.16,<2.17",
        "tf-keras>=2.16,<2.17",
        "tensorflow-hub>=0.16.1",
        "dill",
        "jinja2>=3.1,<4",
        "pillow",
        "pyyaml",
        "scikit-learn>=1.5,<1.6",
        "scipy",
    ],
    entry_points={"console_scripts": ["fakeface=fakeface.cli:main"]},
)
