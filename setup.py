"""Packaging for retail-ann. Versions are pinned: they are the set measured together on the dev machine."""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildWithConf(build_py):
    """Put conf/*.yaml into the built package as retail_ann/conf/: retail_ann.config reads it there
    when no checkout's conf/ is on disk (an installed wheel, a packed environment)."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "retail_ann" / "conf"
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(__file__).resolve().parent / "conf").glob("*.yaml")):
            shutil.copy(f, target / f.name)


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
        "test": ["pytest==8.4.2", "hypothesis==6.170.17", "moto[server]==5.2.5", "boto3==1.44.8"],
        # the peers of bench/quality.py, bench/features.py and bench/score.py; never imported by retail_ann
        "bench": ["lightgbm==4.7.0", "lifetimes==0.11.3", "duckdb==2.0.1", "polars==2.1.0", "mlflow-skinny==3.17.2"],
    },
    entry_points={"console_scripts": ["retail-ann=retail_ann.cli:main"]},
    cmdclass={"build_py": BuildWithConf},
)
