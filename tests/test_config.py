"""Shipped YAML equals the dataclass defaults, and bad settings are refused with a clear error."""
from __future__ import annotations

import pytest

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
    """conf/<job>_<variant>.yaml: a partial config of <job> that changes something."""
    cls = JOB_CONFIGS[path.stem.split("_")[0]]
    assert load_config(cls, path) != cls()


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
