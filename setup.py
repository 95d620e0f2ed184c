"""Packaging for retail-ann. Versions are pinned: they are the set measured together on the dev machine."""
from setuptools import find_packages, setup

setup(
    name="retail-ann",
    version="0.1.0",
    description="Distributed Spark pipeline predicting online-retail customer behaviour with a neural network",
    packages=find_packages(include=["retail_ann", "retail_ann.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "pyspark[connect]==4.0.1",
        "grpcio-status==1.85.3",
        "googleapis-common-protos==1.76.0",
        "pandas==2.3.3",
        "pyarrow==21.0.0",
        "numpy==2.4.6",
        "pyyaml==6.0.3",
        "scikit-learn==1.7.2",
        "threadpoolctl==3.8.0",
        "tensorflow-cpu==2.20.0",
        "keras==3.15.1",
        "matplotlib==3.10.7",
    ],
    extras_require={
        "test": ["pytest==8.4.2", "hypothesis==6.170.17"],
        # bench/quality.py's peers; never imported by retail_ann itself
        "bench": ["lightgbm==4.7.0", "lifetimes==0.11.3"],
    },
    entry_points={"console_scripts": ["retail-ann=retail_ann.cli:main"]},
)
