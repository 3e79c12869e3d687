"""ComfyUI conformance (issue 10, items 16 and 17): queue-time validation and a clean server log.

The first test needs no ComfyUI; the others run on the real server of tests/test_comfyui_host.py
(COMFYUI_PATH, skipped otherwise).
"""
from __future__ import annotations

import pytest
from test_comfyui_host import COMFYUI_PATH, comfy_server, load_api, tiny_prompt  # noqa: F401 (shared fixture)

NEVER_RUN = [  # (workflow, node, inputs, words of the message)
    ("kandinsky-2-2-image-to-image", "KandinskyUNetSampler", {"steps": 4, "denoise": 0.2}, "0 steps"),
    ("kandinsky-2-2-text-to-image", "KandinskyUNetSampler", {"steps": 1000}, "from 1 to 999"),
    ("kandinsky-2-2-emb2emb", "KandinskyPriorEmb2Emb", {"steps": 3, "strength": 0.3}, "0 steps"),
]


@pytest.mark.parametrize("workflow,node,inputs,words", NEVER_RUN)
def test_validate_inputs_refuses_settings_that_never_run(pack, workflow, node, inputs, words):
    cls = pack.NODE_CLASS_MAPPINGS[node]
    defaults = {k: v[1]["default"] for k, v in cls.INPUT_TYPES()["required"].items() if k in ("steps", "denoise",
                                                                                              "strength")}
    assert cls.VALIDATE_INPUTS(**defaults) is True
    answer = cls.VALIDATE_INPUTS(**{**defaults, **inputs})
    assert isinstance(answer, str) and words in answer
    assert cls.VALIDATE_INPUTS() is True  # linked inputs (no value at queue time) are checked when the node runs
    # ComfyUI skips its own range check of inputs VALIDATE_INPUTS takes: ours covers the widget range
    assert "must be an integer" in cls.VALIDATE_INPUTS(steps=0)


@pytest.mark.comfyui
@pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set")
@pytest.mark.parametrize("workflow,node,inputs,words", NEVER_RUN)
def test_settings_that_never_run_are_refused_by_post_prompt(comfy_server, workflow, node, inputs, words):
    prompt, _ = tiny_prompt(comfy_server, load_api(workflow), f"never-{node}")
    node_id = next(nid for nid, n in prompt.items() if n["class_type"] == node)
    prompt[node_id]["inputs"].update(inputs)
    history = comfy_server.get("/history")
    status, answer = comfy_server.post("/prompt", {"prompt": prompt})
    assert status == 400, answer
    errors = answer["node_errors"][node_id]["errors"]
    assert any(words in e["details"] for e in errors), errors
    assert comfy_server.get("/history") == history  # nothing ran: not the prior, not MoVQ
    assert comfy_server.get("/queue")["queue_pending"] == []


@pytest.mark.comfyui
@pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set")
def test_server_log_names_our_models_and_has_no_progress_bars(comfy_server):
    for run in range(2):
        start = len(comfy_server.log_path.read_text(encoding="utf-8", errors="replace"))
        prompt, _ = tiny_prompt(comfy_server, load_api("kandinsky-2-2-text-to-image"), f"log-{run}")
        node_id = next(nid for nid, n in prompt.items() if n["class_type"] == "KandinskyPriorLoader")
        prompt[node_id]["inputs"]["memory_mode"] = "model_offload"  # loads through ComfyUI on every use
        for node in prompt.values():  # a new seed: ComfyUI's cache would skip the nodes
            if "seed" in node["inputs"]:
                node["inputs"]["seed"] = 1000 + run
        entry = comfy_server.wait(comfy_server.queue(prompt))
        assert entry["status"]["status_str"] == "success"
        log = comfy_server.log_path.read_text(encoding="utf-8", errors="replace")[start:]
        assert "Requested to load KandinskyPrior" in log and "Requested to load KandinskyCLIPTextModelWithProjection" \
            in log, log[-3000:]
        assert "Requested to load Resident" not in log and "Loading weights" not in log, log[-3000:]
