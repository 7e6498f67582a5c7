"""Special files given to the Python API are refused at once, never waited on: the C++ readers check the file type
on a non-blocking open (a FIFO as a checkpoint, a shard, or a config is OSError naming the file)."""
import json
import os

import pytest

import moefuse


def small_config():
    d = moefuse.load_config("olmoe-1b-7b")
    d["model_config"].update(hidden_size=64, moe_intermediate_size=32)
    return d


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "w.fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=f"^SafetensorsFile: {fifo}: expected a regular file, got a FIFO$"):
        moefuse.MoeLayer.from_pretrained(fifo, 0, small_config())
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.layers.0.mlp.gate.weight": "shard.safetensors"}}))
    os.mkfifo(tmp_path / "ck" / "shard.safetensors")
    with pytest.raises(OSError, match="shard.safetensors: expected a regular file, got a FIFO$"):
        moefuse.MoeLayer.from_pretrained(tmp_path / "ck", 0, small_config())
    config_fifo = tmp_path / "config.yaml"
    os.mkfifo(config_fifo)
    with pytest.raises(OSError, match=f"^load_config_file: {config_fifo}: expected a regular file, got a FIFO$"):
        moefuse.MoeLayer.from_config(str(config_fifo))
