"""Shipped YAML equals the dataclass defaults, and bad settings are refused with a clear error."""
from __future__ import annotations

import pytest
import yaml

from retail_ann import config as cfg_mod
from retail_ann.config import CONF_DIR, ConfigError, load_config

JOB_CONFIGS = {
    "generate": cfg_mod.GenerateConfig, "features": cfg_mod.FeaturesConfig, "train": cfg_mod.TrainConfig,
    "score": cfg_mod.ScoreConfig, "demo": cfg_mod.DemoConfig,
}


@pytest.mark.parametrize("job", sorted(JOB_CONFIGS))
def test_shipped_yaml_equals_defaults(job):
    cls = JOB_CONFIGS[job]
    assert load_config(cls, CONF_DIR / f"{job}.yaml") == cls()


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*_*.yaml")), ids=lambda p: p.name)
def test_variant_configs_are_valid_settings_of_their_job(path):
    """conf/<job>_<variant>.yaml: a partial config of <job>; each setting it names is what the
    loaded config holds and differs from the default (a repeated default would hide a later change)."""
    cls = JOB_CONFIGS[path.stem.split("_")[0]]
    named = yaml.safe_load(path.read_text())
    loaded, default = load_config(cls, path), cls()
    assert named
    for key, value in named.items():
        assert getattr(loaded, key) == value, key
        assert getattr(default, key) != value, f"{path.name}: {key} repeats the default"


def test_unknown_setting_is_named(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("lookback_days: 30\nlookbak: 2\n")
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) lookbak"):
        load_config(cfg_mod.FeaturesConfig, path)


def test_overrides_win_and_none_is_ignored():
    c = load_config(cfg_mod.FeaturesConfig, CONF_DIR / "features.yaml", {"horizon_days": 7, "lookback_days": None})
    assert c.horizon_days == 7 and c.lookback_days == 365


def test_generated_window_must_end_within_the_calendar():
    """Timestamps past year 9999 cannot be read back by Python or Arrow."""
    assert cfg_mod.GenerateConfig(start="9999-10-01", days=90).days == 90
    with pytest.raises(ConfigError, match="start \\+ days must end by 9999-12-31"):
        cfg_mod.GenerateConfig(start="9999-12-01", days=60)


def test_a_job_run_from_the_shipped_zip_reads_the_yaml_packed_inside_it(tmp_path):
    """Cluster deploy mode: the driver imports retail_ann from the --py-files zip, where no conf/
    directory lies beside the package; the YAML packed into the zip must still take effect."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    copy = tmp_path / "checkout"
    for part in ("retail_ann", "conf", "bin"):
        shutil.copytree(repo / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "conf" / "generate.yaml").write_text("customers: 37\ndays: 20\nstart: \"2023-03-01\"\n")  # not the defaults
    env = {**os.environ, "RETAIL_ANN_BUILD_DIR": str(tmp_path / "build")}
    zip_path = subprocess.run([str(copy / "bin" / "build-package.sh")], env=env, capture_output=True, text=True,
                              check=True).stdout.split()[-1]
    shutil.rmtree(copy)   # nothing of the checkout is left on disk: only the zip
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import retail_ann.cli as c; "
              "assert '.zip' in c.__file__, c.__file__; "
              "sys.exit(c.main(['generate', '--out', sys.argv[2], '--master', 'local[1]', '--log-level', 'WARNING']))")
    run = subprocess.run([sys.executable, "-c", script, zip_path, str(tmp_path / "shop")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.loads((tmp_path / "shop" / "_manifest.json").read_text())
    assert manifest["config"]["customers"] == 37 and manifest["config"]["start"] == "2023-03-01"
    assert manifest["rows"]["customers"] == 37


@pytest.mark.parametrize("job", sorted(JOB_CONFIGS))
def test_every_setting_can_be_given_with_set_on_the_command_line(job):
    """`--set KEY=VALUE` reaches every key of every job's config: its default written as YAML
    writes it reads back the same, and a number changed by one changes that key (or is refused
    naming it)."""
    import dataclasses

    import yaml

    from retail_ann.cli import _settings

    cls = JOB_CONFIGS[job]
    default = cls()
    for field in dataclasses.fields(cls):
        value = getattr(default, field.name)
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        assert load_config(cls, None, _settings([f"{field.name}={text}"], cls)) == default, field.name
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                changed = load_config(cls, None, _settings([f"{field.name}={value + 1}"], cls))
            except ConfigError as e:
                assert field.name in str(e)
            else:
                assert getattr(changed, field.name) == value + 1, field.name
