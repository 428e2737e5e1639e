import copy

import pytest

from fangprune.config import ConfigError, validate_config


def base(tmp_path):
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "config.json").write_text("{}")
    return {
        "models": {"m": {"source": str(tmp_path / "m")}},
        "sparsities": [0.2],
        "methods": {"obc": {}, "o-fang": {"tau": 5}},
    }


def test_defaults_filled(tmp_path):
    cfg = validate_config(base(tmp_path))
    assert cfg["clustering"]["k"] == 7 and cfg["calibration"]["nsamples"] == 128
    assert cfg["_methods_resolved"]["o-fang"]["allocation"] == "fc"
    assert cfg["_methods_resolved"]["o-fang"]["tau"] == 5


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(sparsities=[1.5]), "sparsities.0"),
        (lambda c: c["methods"].update(foo={}), "methods.foo.algorithm"),
        (lambda c: c.update(clustering={"k": 1}), "clustering.k"),
        (lambda c: c["models"]["m"].update(source="/nonexistent/model.gguf"), "models.m.source"),
        (lambda c: c["methods"]["o-fang"].update(tau=-1), "methods.o-fang.tau"),
        (lambda c: c["methods"]["obc"].update(bogus=1), "methods.obc"),
        (lambda c: c.update(sparsities=[0.6]), "sparsities"),  # 0.6 + 0.3 > 7/8 for o-fang
        (lambda c: c.update(device="tpu"), "device"),
    ],
)
def test_bad_config_names_the_key(tmp_path, mutate, key):
    cfg = base(tmp_path)
    mutate(cfg)
    with pytest.raises(ConfigError) as exc:
        validate_config(copy.deepcopy(cfg))
    assert f"'{key}" in str(exc.value)
